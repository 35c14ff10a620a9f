"""Journals as rows of ``sys_journal`` (version 2 entries) and ``sys_journal_events``.

``entry_json`` follows restate-server's serde JSON of its journal entries for the entries the
``restate`` CLI renders (sleeps with their wake-up time, calls and sends with their target and
id, state and promise keys, runs); other entries have no ``entry_json``. Journal entries carry
no append time here (``appended_at`` is null).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from invoker.introspection.rows import Row, invocation_partition_key, target_of
from invoker.journal import Loaded
from invoker.records import Status
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.messages import (
    COMPLETIONS_OF,
    MessageType,
    is_command,
    is_custom,
    is_notification,
    parse,
)

T = MessageType
#: ``(service, handler) -> (service kind, handler kind)`` from the registry, None if unknown.
HandlerKinds = Callable[[str, str], tuple[str, str | None] | None]

_HANDLER_TY = {"exclusive": "Exclusive", "shared": "Shared", "workflow": "Workflow"}
_RETENTION = {"secs": 86400, "nanos": 0}
_NO_SPAN = {
    "span_context": {
        "trace_id": [0] * 16,
        "span_id": [0] * 8,
        "trace_flags": 0,
        "is_remote": False,
        "trace_state": "",
    },
    "cause": None,
}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def entry_type_name(ty: int) -> str:
    """Restate's ``entry_type``: ``Command: Run``, ``Notification: CallInvocationId``, …"""
    if is_custom(ty) or ty not in MessageType._value2member_map_:
        return f"Custom: 0x{ty:04X}"
    name = MessageType(ty).name
    if is_command(ty):
        return "Command: " + _camel(name.removesuffix("_COMMAND"))
    stem = name.removesuffix("_NOTIFICATION").removesuffix("_COMPLETION")
    return "Notification: " + _camel(stem)


def _result(msg: Any, field: str = "result") -> Any:
    """A protobuf ``oneof`` result as restate's serde JSON (``Void``, ``{"Success": [...]}``)."""
    which = msg.WhichOneof(field)
    if which in ("value", "completion_value"):
        return {"Success": list(getattr(msg, which).content)}
    if which in ("failure", "completion_failure"):
        failure = getattr(msg, which)
        return {"Failure": {"code": failure.code, "message": failure.message}}
    return "Void"


def _target(svc: str, handler: str, key: str, kinds: HandlerKinds) -> dict[str, Any] | None:
    found = kinds(svc, handler)
    kind = found[1] if found is not None else None
    if found is None or found[0] == "service" or kind is None:
        return {"Service": {"name": svc, "handler": handler, "scope": None}}
    service_kind = found[0]
    variant = "Workflow" if service_kind == "workflow" else "VirtualObject"
    return {
        variant: {
            "name": svc,
            "key": key,
            "handler": handler,
            "handler_ty": _HANDLER_TY[kind],
            "scope": None,
        }
    }


def _call_json(msg: Any, invoked_id: str | None, kinds: HandlerKinds) -> dict[str, Any] | None:
    if invoked_id is None:
        return None
    return {
        "invocation_id": invoked_id,
        "invocation_target": _target(msg.service_name, msg.handler_name, msg.key, kinds),
        "span_context": _NO_SPAN,
        "parameter": list(msg.parameter),
        "headers": [{"name": h.key, "value": h.value} for h in msg.headers],
        "idempotency_key": msg.idempotency_key if msg.HasField("idempotency_key") else None,
        "completion_retention_duration": _RETENTION,
        "journal_retention_duration": _RETENTION,
    }


def _command_json(
    ty: int, msg: Any, invoked_id: str | None, kinds: HandlerKinds
) -> dict[str, Any] | None:
    """The body of ``{"Command": {<Type>: body}}``, or None where unknown."""
    name = getattr(msg, "name", "")
    if ty == T.INPUT_COMMAND:
        return {
            "headers": [{"name": h.key, "value": h.value} for h in msg.headers],
            "payload": list(msg.value.content),
            "name": name,
        }
    if ty == T.OUTPUT_COMMAND:
        return {"result": _result(msg), "name": name}
    if ty == T.RUN_COMMAND:
        return {"completion_id": msg.result_completion_id, "name": name}
    if ty == T.SLEEP_COMMAND:
        return {
            "wake_up_time": msg.wake_up_time,
            "completion_id": msg.result_completion_id,
            "name": name,
        }
    raw_key = getattr(msg, "key", None)
    key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else None
    if ty == T.SET_STATE_COMMAND:
        return {"key": key, "value": list(msg.value.content), "name": name}
    if ty == T.CLEAR_STATE_COMMAND:
        return {"key": key, "name": name}
    if ty == T.GET_EAGER_STATE_COMMAND:
        return {"key": key, "result": _result(msg), "name": name}
    if ty == T.GET_LAZY_STATE_COMMAND:
        return {"key": key, "completion_id": msg.result_completion_id, "name": name}
    if ty in (T.GET_PROMISE_COMMAND, T.PEEK_PROMISE_COMMAND):
        return {"key": msg.key, "completion_id": msg.result_completion_id, "name": name}
    if ty == T.COMPLETE_PROMISE_COMMAND:
        return {
            "key": msg.key,
            "value": _result(msg, "completion"),
            "completion_id": msg.result_completion_id,
            "name": name,
        }
    if ty in (T.CALL_COMMAND, T.ONE_WAY_CALL_COMMAND):
        request = _call_json(msg, invoked_id, kinds)
        if request is None:
            return None
        body: dict[str, Any] = {"request": request}
        if ty == T.ONE_WAY_CALL_COMMAND:
            body["invoke_time"] = msg.invoke_time
        body["invocation_id_completion_id"] = msg.invocation_id_notification_idx
        if ty == T.CALL_COMMAND:
            body["result_completion_id"] = msg.result_completion_id
        body["name"] = name
        return body
    return None


def _notification_json(ty: int, msg: Any) -> dict[str, Any] | None:
    if ty == T.SIGNAL_NOTIFICATION:
        which = msg.WhichOneof("signal_id")
        ident = {"Index": msg.idx} if which == "idx" else {"Name": msg.name}
        return {"Signal": {"id": ident, "result": _result(msg)}}
    variant = entry_type_name(ty).removeprefix("Notification: ")
    body: dict[str, Any] = {"completion_id": msg.completion_id}
    if ty == T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION:
        body["invocation_id"] = msg.invocation_id
    elif ty != T.SLEEP_COMPLETION_NOTIFICATION:
        body["result"] = _result(msg)
    return {"Completion": {variant: body}}


def journal_rows(loaded: Loaded, kinds: HandlerKinds) -> list[Row]:
    """``sys_journal`` rows of one invocation, in journal order."""
    inv = loaded.invocation
    pk = invocation_partition_key(inv.id)
    parsed: list[Any] = []
    call_ids: dict[int, str] = {}
    done: set[tuple[int, int]] = set()  # (notification type, completion id) present
    for ty, payload in loaded.entries:
        msg: Any = None
        if is_command(ty) or is_notification(ty):
            try:
                msg = parse(ty, payload)
            except ProtocolError:
                msg = None
        parsed.append(msg)
        if msg is not None and is_notification(ty) and ty != T.SIGNAL_NOTIFICATION:
            done.add((ty, msg.completion_id))
            if ty == T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION:
                call_ids[msg.completion_id] = msg.invocation_id
    rows: list[Row] = []
    for index, ((ty, payload), msg) in enumerate(zip(loaded.entries, parsed, strict=True)):
        row: Row = {
            "partition_key": pk,
            "id": inv.id,
            "index": index,
            "entry_type": entry_type_name(ty),
            "raw": payload,
            "raw_length": len(payload),
            "version": 2,
        }
        rows.append(row)
        if msg is None:
            continue
        body: dict[str, Any] | None
        if is_command(ty):
            row["name"] = getattr(msg, "name", getattr(msg, "entry_name", ""))
            invoked_id = None
            if ty in (T.CALL_COMMAND, T.ONE_WAY_CALL_COMMAND):
                invoked_id = call_ids.get(msg.invocation_id_notification_idx)
                row["invoked_id"] = invoked_id
                row["invoked_target"] = target_of(
                    msg.service_name, msg.key or None, msg.handler_name
                )
            elif ty == T.SLEEP_COMMAND:
                row["sleep_wakeup_at"] = msg.wake_up_time
            elif ty in (T.GET_PROMISE_COMMAND, T.PEEK_PROMISE_COMMAND, T.COMPLETE_PROMISE_COMMAND):
                row["promise_name"] = msg.key
            completions = COMPLETIONS_OF.get(MessageType(ty))
            if completions:
                cid = getattr(msg, "result_completion_id", None)
                if ty == T.ONE_WAY_CALL_COMMAND:
                    cid = msg.invocation_id_notification_idx
                row["completed"] = (completions[-1], cid) in done
            body = _command_json(ty, msg, invoked_id, kinds)
            variant = row["entry_type"].removeprefix("Command: ")
            if body is not None:
                row["entry_json"] = json.dumps({"Command": {variant: body}}, separators=(",", ":"))
        else:
            body = _notification_json(ty, msg)
            if body is not None:
                row["entry_json"] = json.dumps({"Notification": body}, separators=(",", ":"))
    return rows


def journal_event_rows(loaded: Loaded) -> list[Row]:
    """``sys_journal_events``: the last transient failure of a running invocation."""
    inv = loaded.invocation
    failure = inv.last_failure
    if failure is None or inv.status == Status.COMPLETED:
        return []
    event = {
        "ty": "TransientError",
        "error_code": failure.code,
        "error_message": failure.message,
        "error_stacktrace": inv.last_failure_stacktrace,
        "related_command": inv.last_failure_related_command,
        "restate_doc_error_code": None,
    }
    return [
        {
            "partition_key": invocation_partition_key(inv.id),
            "id": inv.id,
            "after_journal_entry_index": max(len(loaded.entries) - 1, 0),
            "appended_at": inv.modified_ms,
            "event_type": "TransientError",
            "event_json": json.dumps(event, separators=(",", ":")),
        }
    ]
