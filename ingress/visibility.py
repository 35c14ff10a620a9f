"""Private services stay private: the ingress refuses every route that reaches them.

restate-server checks ``ingress_private`` only when a call or send names the service; we also
refuse attach, output and lookup of their invocations (by id, workflow id or idempotency key)
and the completion of their awakeables, answering as restate-server answers a call to a private
service.
"""

from __future__ import annotations

from ingress.errors import IngressHttpError
from ingress.paths import ByIdempotencyKey, ByWorkflow, InvocationRef
from invoker.api import EngineApi

NOT_PUBLIC = "the invoked service is not public"


def refuse_private(engine: EngineApi, service: str, handler: str | None = None) -> None:
    """400 ``the invoked service is not public`` if ``service`` or ``handler`` is private."""
    if engine.is_ingress_private(service, handler):
        raise IngressHttpError(400, NOT_PUBLIC)


async def refuse_private_invocation(engine: EngineApi, invocation_id: str) -> None:
    """400 if invocation ``invocation_id`` exists and targets a private service or handler."""
    target = await engine.invocation_target(invocation_id)
    if target is not None:
        refuse_private(engine, target.service, target.handler)


async def refuse_private_ref(engine: EngineApi, ref: InvocationRef, invocation_id: str) -> None:
    """400 if the invocation ``ref`` designates (id ``invocation_id``) is private.

    An idempotent request names its target: no read. A workflow names its service (checked
    without a read) but not its run handler, which the invocation record tells.
    """
    match ref:
        case ByIdempotencyKey(target, _):
            refuse_private(engine, target.service, target.handler)
            return
        case ByWorkflow(name, _):
            refuse_private(engine, name)
    await refuse_private_invocation(engine, invocation_id)
