"""Failures that retrying can never fix, recognized from what the SDK reported.

The official ``restate`` SDK reports some mistakes as ordinary retryable errors, identical on
every retry: a return value or a ``ctx.run`` result it cannot serialize, a plain ``def``
handler; and a dev server may hold a deployment of an earlier run that it no longer serves.
The engine pauses such an invocation after its first failed attempt (instead of retrying it 70
times) and logs one line naming the handler and the step. Our SDK reports the same mistakes as
terminal errors itself.
"""

from __future__ import annotations

from invoker import records as rec


def never_succeeds(
    target: str, message: str, stacktrace: str | None, related_command: str | None
) -> str | None:
    """One line naming ``target`` (``Service/handler``) and the step, if retrying the failure
    described by ``message``/``stacktrace``/``related_command`` can never succeed."""
    trace = stacktrace or ""
    if "output_serde.serialize(" in trace:
        return f"{target}: the return value cannot be serialized: {message}"
    if "serde.serialize(action_result)" in trace:
        step = (related_command or "?").split(" (index")[0]
        return f"{target}: the result of ctx.run({step!r}) cannot be serialized: {message}"
    if "no in-process app named" in message:
        return (
            f"{target}: its deployment is not served by this dev server ({message}): serve "
            "that module again, or remove the stale deployment (restate-lambda deployments "
            "list / remove)"
        )
    if "can't be used in 'await' expression" in message and "handler.fn(" in trace:
        return f"{target} is a plain `def`: Restate handlers must be `async def` ({message})"
    return None


def reason_of(inv: rec.Invocation) -> str | None:
    """:func:`never_succeeds` of an invocation record's last failure (``None`` if none)."""
    if inv.last_failure is None:
        return None
    return never_succeeds(
        f"{inv.service}/{inv.handler}",
        inv.last_failure.message,
        inv.last_failure_stacktrace,
        inv.last_failure_related_command,
    )
