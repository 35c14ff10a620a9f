"""The system tables' Arrow schemas: restate-server 1.7.12's names, column order and types.

Read from a running restate-server 1.7.12 (``information_schema.columns``). Every column is
nullable except ``sys_invocation.status``. Type codes: ``str`` LargeUtf8, ``u32``/``u64``
unsigned integers, ``bool``, ``bin`` LargeBinary, ``ts`` Timestamp(ms, "+00:00"), ``dur``
Duration(ms), ``list<T>``; a trailing ``!`` marks a non-nullable column.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pyarrow as pa

TABLES: dict[str, str] = {
    "state": """
        partition_key u64, scope str, service_name str, service_key str, key str, key_length u64,
        value_utf8 str, value bin, value_length u64
    """,
    "sys_deployment": """
        id str, ty str, endpoint str, created_at ts, min_service_protocol_version u32,
        max_service_protocol_version u32, services list<str>
    """,
    "sys_inbox": """
        partition_key u64, service_name str, service_key str, id str, sequence_number u64,
        created_at ts
    """,
    "sys_invocation": """
        id str, vqueue_id str, target str, target_service_name str, target_service_key str,
        target_handler_name str, target_service_ty str, scope str, limit_key str,
        idempotency_key str, invoked_by str, invoked_by_service_name str, invoked_by_id str,
        invoked_by_subscription_id str, invoked_by_target str, restarted_from str,
        pinned_deployment_id str, pinned_service_protocol_version u32, trace_id str,
        journal_size u32, journal_commands_size u32, created_at ts,
        created_using_restate_version str, modified_at ts, inboxed_at ts, scheduled_at ts,
        scheduled_start_at ts, running_at ts, completed_at ts, completion_retention dur,
        journal_retention dur, suspended_waiting_for_completions list<u32>,
        suspended_waiting_for_signals list<u32>, suspended_waiting_future_json str,
        retry_count u64, last_start_at ts, next_retry_at ts, last_attempt_deployment_id str,
        last_attempt_server str, last_failure str, last_failure_error_code str,
        last_failure_related_entry_index u64, last_failure_related_entry_name str,
        last_failure_related_entry_type str, last_failure_related_command_index u64,
        last_failure_related_command_name str, last_failure_related_command_type str,
        last_awaiting_on_future_json str, status str!, completion_result str,
        completion_failure str
    """,
    "sys_invocation_state": """
        partition_key u64, id str, in_flight bool, retry_count u64, last_start_at ts,
        last_attempt_deployment_id str, last_attempt_server str, next_retry_at ts,
        last_failure str, last_failure_error_code str, last_failure_related_command_index u64,
        last_failure_related_command_name str, last_failure_related_command_type str,
        last_failure_related_entry_index u64, last_failure_related_entry_name str,
        last_failure_related_entry_type str, last_awaiting_on_future_json str
    """,
    "sys_invocation_status": """
        partition_key u64, id str, vqueue_id str, status str, completion_result str,
        completion_failure str, target str, target_service_name str, target_service_key str,
        target_handler_name str, target_service_ty str, scope str, limit_key str,
        idempotency_key str, invoked_by str, invoked_by_id str, invoked_by_subscription_id str,
        invoked_by_service_name str, invoked_by_target str, restarted_from str,
        pinned_deployment_id str, pinned_service_protocol_version u32, trace_id str,
        journal_size u32, journal_commands_size u32, created_at ts,
        created_using_restate_version str, modified_at ts, inboxed_at ts, scheduled_at ts,
        scheduled_start_at ts, running_at ts, completed_at ts, completion_retention dur,
        journal_retention dur, suspended_waiting_for_completions list<u32>,
        suspended_waiting_for_signals list<u32>, suspended_waiting_future_json str
    """,
    "sys_journal": """
        partition_key u64, id str, index u32, entry_type str, name str, completed bool,
        invoked_id str, invoked_target str, sleep_wakeup_at ts, promise_name str, raw bin,
        raw_length u64, version u32, entry_json str, entry_lite_json str, appended_at ts
    """,
    "sys_journal_events": """
        partition_key u64, id str, after_journal_entry_index u32, appended_at ts, event_type str,
        event_json str
    """,
    "sys_keyed_service_status": """
        partition_key u64, service_name str, service_key str, invocation_id str
    """,
    "sys_promise": """
        partition_key u64, scope str, service_name str, service_key str, key str, completed bool,
        completion_success_value bin, completion_success_value_utf8 str, completion_failure str
    """,
    "sys_service": """
        name str, revision u64, public bool, ty str, deployment_id str
    """,
}

_TYPES: dict[str, Any] = {
    "str": pa.large_string(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "bool": pa.bool_(),
    "bin": pa.large_binary(),
    "ts": pa.timestamp("ms", tz="+00:00"),
    "dur": pa.duration("ms"),
    "list<u32>": pa.list_(pa.uint32()),
    "list<str>": pa.list_(pa.large_string()),
}


def columns(table: str) -> list[tuple[str, str]]:
    """``(name, type code)`` of each column of ``table``, in order."""
    out = []
    for spec in TABLES[table].split(","):
        name, code = spec.split()
        out.append((name, code))
    return out


@cache
def schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table``."""
    fields = []
    for name, code in columns(table):
        nullable = not code.endswith("!")
        fields.append(pa.field(name, _TYPES[code.rstrip("!")], nullable=nullable))
    return pa.schema(fields)
