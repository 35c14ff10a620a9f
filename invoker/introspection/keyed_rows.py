"""Virtual object and workflow records as rows of ``state``, ``sys_inbox``,
``sys_keyed_service_status`` and ``sys_promise``."""

from __future__ import annotations

from invoker import records as rec
from invoker.introspection.rows import Row, failure_text, object_partition_key
from invoker.introspection.source import ObjectItem
from invoker.store import decode_lock


def _utf8(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def state_rows(obj: ObjectItem) -> list[Row]:
    """``state`` rows of one object's state record, by key."""
    entries = rec.decode(obj.item.value, rec.StateRecord).entries
    pk = object_partition_key(obj.service, obj.key)
    return [
        {
            "partition_key": pk,
            "service_name": obj.service,
            "service_key": obj.key,
            "key": name,
            "key_length": len(name.encode("utf-8", "surrogatepass")),
            "value_utf8": _utf8(value),
            "value": value,
            "value_length": len(value),
        }
        for name, value in sorted(entries.items())
    ]


def keyed_status_row(obj: ObjectItem) -> Row | None:
    """The ``sys_keyed_service_status`` row of a locked key (None when it is free)."""
    holder = decode_lock(obj.item.value).holder
    if holder is None:
        return None
    return {
        "partition_key": object_partition_key(obj.service, obj.key),
        "service_name": obj.service,
        "service_key": obj.key,
        "invocation_id": holder,
    }


def inbox_row(service: str, key: str, seq: int, invocation_id: str) -> Row:
    """One ``sys_inbox`` row (an invocation queued behind a key's lock)."""
    return {
        "partition_key": object_partition_key(service, key),
        "service_name": service,
        "service_key": key,
        "id": invocation_id,
        "sequence_number": seq,
    }


def promise_row(service: str, key: str, name: str, promise: rec.PromiseRecord) -> Row:
    """One ``sys_promise`` row."""
    row: Row = {
        "partition_key": object_partition_key(service, key),
        "service_name": service,
        "service_key": key,
        "key": name,
        "completed": promise.result is not None,
    }
    result = promise.result
    if result is not None:
        if result.failure is not None:
            row["completion_failure"] = failure_text(result.failure)
        else:
            value = result.value or b""
            row["completion_success_value"] = value
            row["completion_success_value_utf8"] = _utf8(value)
    return row
