"""Resolving invocation references (id, workflow, idempotency key) to invocation ids."""

from __future__ import annotations

from typing import Any

from ingress.errors import IngressHttpError
from ingress.ids import IdError, check_invocation_id
from ingress.paths import ByIdempotencyKey, ByInvocationId, ByWorkflow, InvocationRef
from invoker.api import EngineApi, Target


def checked_invocation_id(invocation_id: str) -> str:
    """``invocation_id`` if well-formed, else a 400 like restate-server's."""
    try:
        check_invocation_id(invocation_id)
    except IdError as exc:
        raise IngressHttpError(400, f"bad invocation id '{invocation_id}': {exc}") from exc
    return invocation_id


def resolve_invocation_id(engine: EngineApi, ref: InvocationRef) -> str:
    """The invocation id ``ref`` designates."""
    match ref:
        case ByInvocationId(invocation_id):
            return checked_invocation_id(invocation_id)
        case ByWorkflow(name, key):
            return engine.workflow_invocation_id(name, key)
        case ByIdempotencyKey(target, idempotency_key):
            return engine.idempotent_invocation_id(target, idempotency_key)
    raise AssertionError(f"unknown invocation reference {ref!r}")  # pragma: no cover


def _string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise IngressHttpError(
            400, f"cannot read body: invalid lookup body: missing or invalid field `{name}`"
        )
    return value


def ref_from_json(body: dict[str, Any]) -> InvocationRef:
    """The reference of a ``POST /restate/attach|output|lookup`` body."""
    kind = body.get("target")
    if kind == "invocation":
        return ByInvocationId(_string_field(body, "invocationId"))
    if kind == "workflow":
        return ByWorkflow(_string_field(body, "workflowName"), _string_field(body, "workflowKey"))
    if kind == "idempotentInvocation":
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise IngressHttpError(400, "cannot read body: invalid lookup body: `key` not a string")
        target = Target(
            service=_string_field(body, "service"),
            handler=_string_field(body, "handler"),
            key=key,
        )
        return ByIdempotencyKey(target, _string_field(body, "idempotencyKey"))
    raise IngressHttpError(
        400,
        f"cannot read body: invalid lookup body: unknown variant `{kind}`, expected one of "
        "`workflow`, `idempotentInvocation`, `invocation`",
    )
