"""Invocation ids the engine derives from what defines them (design decision 5).

* an idempotent request: (service, key, handler, idempotency key)
* a workflow run: (workflow, workflow id)
* a child call or send: (parent invocation id, command index)
* anything else: random

Derivation makes a duplicate a create-if-absent conflict, which turns into a read.
"""

from __future__ import annotations

from restate_lambda.protocol.ids import AwakeableId, InvocationId

#: Raw bytes of the invocation ids in use (``StartMessage.id``, awakeable ids embed them): an
#: invocation's attempts ask for them again, and a new id's are known when it is made.
_RAW: dict[str, bytes] = {}
_RAW_MAX = 4096


def _remember(invocation_id: str, raw: bytes) -> None:
    if len(_RAW) >= _RAW_MAX:
        _RAW.clear()
    _RAW[invocation_id] = raw


def new_invocation_id() -> str:
    """A fresh random invocation id."""
    made = InvocationId.new()
    text = str(made)
    _remember(text, made.to_bytes())
    return text


def idempotent_invocation_id(service: str, handler: str, key: str | None, idem: str) -> str:
    """The id of an idempotent request (Restate scopes keys by service, key and handler)."""
    return str(InvocationId.derive("idem", service, key or "", handler, idem))


def workflow_invocation_id(workflow: str, key: str) -> str:
    """The id of a workflow's run handler for one workflow id."""
    return str(InvocationId.derive("wf", workflow, key))


def child_invocation_id(parent: str, command_index: int) -> str:
    """The id of the call or send created by the parent's command at ``command_index``."""
    return str(InvocationId.derive("child", parent, str(command_index)))


def invocation_id_bytes(invocation_id: str) -> bytes:
    """The raw bytes sent as ``StartMessage.id`` (awakeable ids embed them)."""
    raw = _RAW.get(invocation_id)
    if raw is None:
        raw = InvocationId.parse(invocation_id).to_bytes()
        _remember(invocation_id, raw)
    return raw


def parse_invocation_id(text: str) -> str:
    """Validate an invocation id from a client; ValueError if malformed."""
    return str(InvocationId.parse(text))


def awakeable_target(awakeable_id: str) -> tuple[str, int]:
    """(invocation id, signal index) addressed by an awakeable id; ValueError if malformed."""
    parsed = AwakeableId.parse(awakeable_id)
    return str(parsed.invocation_id), parsed.signal_index
