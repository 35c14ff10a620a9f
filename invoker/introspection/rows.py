"""Invocation records as rows of ``sys_invocation``, ``sys_invocation_status`` and
``sys_invocation_state`` (restate-server 1.7.12's columns and values).

Times stay epoch milliseconds here (the Arrow columns are ``Timestamp(ms)``/``Duration(ms)``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from invoker import records as rec
from restate_lambda.protocol.ids import InvocationId

Row = dict[str, Any]

#: ``sys_invocation_status.status`` (the stored status) for each of our statuses; the
#: ``sys_invocation`` view derives ready/running/backing-off from ``invoked``.
_STORED_STATUS = {
    rec.Status.INBOXED: "inboxed",
    rec.Status.SCHEDULED: "scheduled",
    rec.Status.READY: "invoked",
    rec.Status.RUNNING: "invoked",
    rec.Status.BACKING_OFF: "invoked",
    rec.Status.SUSPENDED: "suspended",
    rec.Status.PAUSED: "paused",
    rec.Status.COMPLETED: "completed",
}
#: Statuses whose invocations the invoker knows about (rows of ``sys_invocation_state``).
_INVOKER_STATUSES = (
    rec.Status.READY,
    rec.Status.RUNNING,
    rec.Status.BACKING_OFF,
    rec.Status.PAUSED,
)
_RELATED = re.compile(r"^(?P<name>.*) \(index (?P<index>\d+), type (?P<type>.*)\)$")


def invocation_partition_key(invocation_id: str) -> int | None:
    """The u64 partition key an invocation id carries."""
    try:
        return InvocationId.parse(invocation_id).partition_key
    except ValueError:
        return None


def object_partition_key(service: str, key: str) -> int:
    """A stable u64 for a virtual object or workflow instance (``partition_key`` columns)."""
    digest = hashlib.sha256(f"{service}/{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def target_of(service: str, key: str | None, handler: str) -> str:
    """``Svc/handler`` or ``Svc/key/handler``."""
    return f"{service}/{handler}" if key is None else f"{service}/{key}/{handler}"


def failure_text(failure: rec.Failure) -> str:
    """A failure as ``[code] message`` (Restate's ``completion_failure`` format)."""
    return f"[{failure.code}] {failure.message}"


def _related_command(inv: rec.Invocation) -> Row:
    """``last_failure_related_*`` from the ``name (index N, type T)`` the engine stores."""
    text = inv.last_failure_related_command
    if not text:
        return {}
    match = _RELATED.match(text)
    if match is None:
        return {"last_failure_related_command_name": text, "last_failure_related_entry_name": text}
    name = None if match["name"] in ("?", "") else match["name"]
    index = int(match["index"])
    out: Row = {}
    for kind in ("command", "entry"):
        out[f"last_failure_related_{kind}_index"] = index
        out[f"last_failure_related_{kind}_name"] = name
        out[f"last_failure_related_{kind}_type"] = match["type"]
    return out


def _common(inv: rec.Invocation) -> Row:
    """Columns shared by ``sys_invocation`` and ``sys_invocation_status``."""
    retention = inv.idempotency_retention_ms
    if retention is None and inv.expires_ms is not None and inv.completed_ms is not None:
        retention = inv.expires_ms - inv.completed_ms
    row: Row = {
        "id": inv.id,
        "target": target_of(inv.service, inv.key, inv.handler),
        "target_service_name": inv.service,
        "target_service_key": inv.key,
        "target_handler_name": inv.handler,
        "target_service_ty": inv.service_kind,
        "idempotency_key": inv.idempotency_key,
        "invoked_by": inv.invoked_by,
        "invoked_by_id": inv.parent_id if inv.invoked_by == "service" else None,
        "pinned_deployment_id": inv.deployment_id,
        "pinned_service_protocol_version": inv.protocol_version,
        "trace_id": inv.trace.trace_id if inv.trace is not None else None,
        "journal_size": inv.journal_len if inv.status != rec.Status.INBOXED else None,
        "journal_commands_size": inv.commands_len if inv.status != rec.Status.INBOXED else None,
        "created_at": inv.created_ms,
        "modified_at": inv.modified_ms,
        "inboxed_at": inv.created_ms if inv.status == rec.Status.INBOXED else None,
        "scheduled_at": inv.created_ms if inv.scheduled_ms is not None else None,
        "scheduled_start_at": inv.scheduled_ms,
        "completed_at": inv.completed_ms,
        "completion_retention": retention,
        "journal_retention": inv.journal_retention_ms,
    }
    if inv.status == rec.Status.SUSPENDED:
        row["suspended_waiting_for_completions"] = list(inv.waiting_completions)
        row["suspended_waiting_for_signals"] = list(inv.waiting_signals)
    if inv.result is not None:
        if inv.result.failure is not None:
            row["completion_result"] = "failure"
            row["completion_failure"] = failure_text(inv.result.failure)
        else:
            row["completion_result"] = "success"
    return row


def _attempt_state(inv: rec.Invocation, servers: Mapping[str, str]) -> Row:
    """The invoker's view of an invocation (``sys_invocation_state`` columns)."""
    row: Row = {
        "in_flight": inv.status == rec.Status.RUNNING,
        "retry_count": inv.retry_count,
        "last_start_at": inv.last_start_ms,
        "next_retry_at": inv.next_retry_ms if inv.status == rec.Status.BACKING_OFF else None,
    }
    if inv.attempts and inv.deployment_id is not None:
        row["last_attempt_deployment_id"] = inv.deployment_id
        row["last_attempt_server"] = servers.get(inv.deployment_id)
    failure = inv.last_failure
    if failure is not None and inv.status != rec.Status.COMPLETED:
        text = failure_text(failure)
        if inv.last_failure_stacktrace:
            text += "\n" + inv.last_failure_stacktrace
        row["last_failure"] = text
        row["last_failure_error_code"] = str(failure.code)
        row.update(_related_command(inv))
    return row


def invocation_row(inv: rec.Invocation, servers: Mapping[str, str]) -> Row:
    """A ``sys_invocation`` row. ``servers`` maps deployment ids to their SDK version."""
    row = _common(inv)
    if inv.status in _INVOKER_STATUSES or inv.last_failure is not None:
        row.update(_attempt_state(inv, servers))
    row["status"] = inv.status.value
    return row


def invocation_status_row(inv: rec.Invocation) -> Row:
    """A ``sys_invocation_status`` row (the stored status: inboxed, invoked, …)."""
    row = _common(inv)
    row["partition_key"] = invocation_partition_key(inv.id)
    row["status"] = _STORED_STATUS[inv.status]
    return row


def invocation_state_row(inv: rec.Invocation, servers: Mapping[str, str]) -> Row | None:
    """A ``sys_invocation_state`` row, for invocations the invoker has (else None)."""
    if inv.status not in _INVOKER_STATUSES:
        return None
    row = _attempt_state(inv, servers)
    row["id"] = inv.id
    row["partition_key"] = invocation_partition_key(inv.id)
    return row


def fill_invoked_by(rows: list[Row], parents: Mapping[str, rec.Invocation]) -> None:
    """Set ``invoked_by_service_name``/``invoked_by_target`` from the callers' records."""
    for row in rows:
        parent = parents.get(row.get("invoked_by_id") or "")
        if parent is not None:
            row["invoked_by_service_name"] = parent.service
            row["invoked_by_target"] = target_of(parent.service, parent.key, parent.handler)
