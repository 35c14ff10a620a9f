"""The write paths: the contract's conditional batches as DynamoDB requests (blocking).

**Contract rule -> DynamoDB.**

==============================  ==================================================================
Put ``expect=0``                ``PutItem`` + ``attribute_not_exists(pk)``, ``v = 1``
Put ``expect=n``                ``PutItem`` + ``v = :n``, ``v = n + 1`` (full replace: clears ``d``)
Put ``expect=None``             ``UpdateItem SET v = if_not_exists(v, 0) + 1, b = ... REMOVE ...``
Delete ``expect=None`` / ``0``  ``DeleteItem`` (+ ``attribute_not_exists(pk)`` for 0)
Delete ``expect=n``             one-item ``TransactWriteItems`` (idempotent retries, see below)
Check (alone)                   strongly consistent ``GetItem``, compared in Python
batch of 2..100                 one ``TransactWriteItems`` (Put/Update/Delete/ConditionCheck)
failed condition                ``ConditionalCheckFailedException`` -> ``ConflictError(index=0)``;
                                ``TransactionCanceledException`` -> ``index`` = first
                                ``ConditionalCheckFailed`` in ``CancellationReasons``
``TransactionConflict``         retried here with backoff (nothing was applied), then
                                ``BackendUnavailableError``
throttling, 5xx, timeouts       botocore's standard retries, then ``BackendUnavailableError``
delete_items                    ``BatchWriteItem`` of 25 deletes a request (not atomic)
==============================  ==================================================================

**Retries and ambiguity.** botocore retries a request whose response was lost. For a conditional
single-item write that first attempt may have applied, and the retry then fails its own condition.
``TransactWriteItems`` carries an automatic ``ClientRequestToken`` that makes such retries return
the original outcome, which is why deletes with ``expect=n`` (fire-once claims) go through it. For
conditional ``PutItem`` the failure returns the stored item (via
``ReturnValuesOnConditionCheckFailure``) and, only if botocore did retry, a stored item equal to
the one written counts as this write's success. (Another writer storing the byte-identical item
at the same version in that window would also count as a win; values written by distinct engine
instances differ, so this is accepted.)

**Size limits.** An item holds at most 400 KB, a transaction 4 MB in total. Values larger than
``offload_threshold`` (350 000 bytes) are uploaded to S3 first (:mod:`backends.s3_blobs`,
content-addressed and idempotent) and the item stores the reference ``r``; reads fetch and verify
it transparently. A batch whose inline values add up to more than
:data:`~backends.dynamodb.schema.TXN_BUDGET_BYTES` offloads its largest values until it fits.
Blob garbage collection is a TODO (see :mod:`backends.s3_blobs`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Final

from backends.api import (
    BackendError,
    BackendUnavailableError,
    Check,
    Delete,
    Put,
    ValueTooLargeError,
    WriteOp,
)
from backends.dynamodb.errors import THROTTLED, ConditionFailed, TransactionConflict, conflict
from backends.dynamodb.schema import (
    INLINE_MAX_BYTES,
    TTL_ATTRIBUTE,
    TXN_BUDGET_BYTES,
    due_shard,
    item_key,
)
from backends.dynamodb.table import TableClient

#: Attempts at a write that keeps meeting ``TransactionConflict`` (nothing applied each time).
TXN_CONFLICT_ATTEMPTS: Final = 6


@dataclass(slots=True)
class _Prepared:
    """One operation in DynamoDB terms."""

    op: WriteOp
    key: dict[str, Any]
    attrs: dict[str, Any] | None = None  # a Put's full item (inline value or blob reference)
    value: bytes | None = None  # a Put's value while it is still inline
    size: int = 0  # estimated item size in bytes


def write_batch(t: TableClient, ops: list[WriteOp], offload_threshold: int) -> None:
    """Apply a validated batch atomically (see the module docstring for the mapping).

    Raises:
        ConflictError: a condition failed.
        ValueTooLargeError: the batch does not fit a transaction, even with offloading.
        BackendUnavailableError: throttled, timed out or unreachable after retries.
    """
    prepared = _prepare(t, ops, offload_threshold)
    if len(prepared) == 1:
        _write_one(t, prepared[0])
    else:
        _transact(t, prepared)


def delete_keys(t: TableClient, keys: list[tuple[str, str]]) -> None:
    """Delete ``keys`` with ``BatchWriteItem`` (25 a request, not atomic, no conditions)."""
    for start in range(0, len(keys), 25):
        requests = [
            {"DeleteRequest": {"Key": item_key(pk, sk)}} for pk, sk in keys[start : start + 25]
        ]
        pending: dict[str, Any] = {t.name: requests}
        delay = 0.01
        while pending:
            page = t.call("batch_write_item", RequestItems=pending)
            pending = page.get("UnprocessedItems") or {}
            if pending:
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)


def _prepare(t: TableClient, ops: list[WriteOp], offload_threshold: int) -> list[_Prepared]:
    """Map ops to items; offload values that are too big alone or for the batch's budget."""
    prepared: list[_Prepared] = []
    for op in ops:
        key = item_key(op.pk, op.sk)
        size = len(key["pk"]["S"].encode()) + len(key["sk"]["S"].encode()) + 64
        if isinstance(op, Put):
            value = bytes(op.value)
            prepared.append(_Prepared(op, key, value=value, size=size + len(value)))
        else:
            prepared.append(_Prepared(op, key, size=size))
    for p in prepared:
        if p.value is not None and len(p.value) > offload_threshold:
            _offload(t, p)
    if len(prepared) > 1:
        total = sum(p.size for p in prepared)
        for p in sorted(prepared, key=lambda p: -p.size):
            if total <= TXN_BUDGET_BYTES or p.value is None:
                break
            if t.blobs is None:
                raise ValueTooLargeError(
                    f"the batch holds about {total} bytes; a DynamoDB transaction holds at "
                    f"most 4 MB (configure an S3 bucket to offload large values)"
                )
            before = p.size
            _offload(t, p)
            total -= before - p.size
    for p in prepared:
        if isinstance(p.op, Put):
            attrs = dict(p.key)
            attrs["v"] = {"N": str(1 if not p.op.expect else p.op.expect + 1)}
            if p.value is not None:
                attrs["b"] = {"B": p.value}
            else:
                assert p.attrs is not None
                attrs["r"] = p.attrs["r"]
            if p.op.due_ms is not None:
                attrs["d"] = {"N": str(p.op.due_ms)}
                attrs["ds"] = {"S": due_shard(p.op.pk, p.op.sk)}
            if p.op.expires_ms is not None:
                # TTL wants epoch seconds; round up so nothing goes before its time.
                attrs[TTL_ATTRIBUTE] = {"N": str(-(-p.op.expires_ms // 1000))}
            p.attrs = attrs
    return prepared


def _offload(t: TableClient, p: _Prepared) -> None:
    assert p.value is not None
    if t.blobs is None:  # validate_batch already rejects these; belt and braces
        raise ValueTooLargeError(
            f"value of {len(p.value)} bytes for {p.op.pk!r}/{p.op.sk!r} exceeds "
            f"{INLINE_MAX_BYTES} bytes (DynamoDB items hold 400 KB); configure an S3 bucket "
            "(dynamodb://TABLE?bucket=...) to store large values"
        )
    ref = t.blobs.put(p.value)
    p.size -= len(p.value) - len(ref)
    p.attrs = {"r": {"S": ref}}
    p.value = None


def _write_one(t: TableClient, p: _Prepared) -> None:
    op = p.op
    if isinstance(op, Check):
        raw = t.call(
            "get_item",
            TableName=t.name,
            Key=p.key,
            ConsistentRead=True,
            ProjectionExpression="v",
        ).get("Item")
        found = 0 if raw is None else int(raw["v"]["N"])
        if found != op.expect:
            raise conflict(0, op, found)
        return
    if isinstance(op, Delete) and op.expect:
        _transact(t, [p])  # idempotent retries for fire-once claims
        return
    request: dict[str, Any] = {"TableName": t.name}
    _add_condition(request, op.expect)
    if isinstance(op, Delete):
        method = "delete_item"
        request["Key"] = p.key
    elif op.expect is None:
        method = "update_item"
        request["Key"] = p.key
        _add_upsert(request, p)
    else:
        method = "put_item"
        request["Item"] = p.attrs
    if op.expect is not None:
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    try:
        delay = 0.005
        for attempt in range(TXN_CONFLICT_ATTEMPTS):
            try:
                t.call(method, **request)
                return
            except TransactionConflict as e:
                if attempt == TXN_CONFLICT_ATTEMPTS - 1:
                    raise BackendUnavailableError(
                        f"{t.where}: {method} kept colliding with transactions on "
                        f"{op.pk!r}/{op.sk!r} ({e}); nothing was applied, retry"
                    ) from e
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
    except ConditionFailed as e:
        old = e.response.get("Item")
        retried = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
        if retried and method == "put_item" and old == p.attrs:
            return  # our first attempt applied; its response was lost
        raise conflict(0, op, None if old is None else int(old["v"]["N"]), old is None) from None


def _transact(t: TableClient, prepared: list[_Prepared]) -> None:
    items: list[dict[str, Any]] = []
    for p in prepared:
        op = p.op
        entry: dict[str, Any] = {"TableName": t.name}
        _add_condition(entry, op.expect)
        if isinstance(op, Put):
            if op.expect is None:
                entry["Key"] = p.key
                _add_upsert(entry, p)
                items.append({"Update": entry})
            else:
                entry["Item"] = p.attrs
                items.append({"Put": entry})
        elif isinstance(op, Delete):
            entry["Key"] = p.key
            items.append({"Delete": entry})
        else:
            entry["Key"] = p.key
            items.append({"ConditionCheck": entry})
    delay = 0.005
    for attempt in range(TXN_CONFLICT_ATTEMPTS):
        try:
            # botocore fills in ClientRequestToken, so its own retries are idempotent.
            t.call("transact_write_items", TransactItems=items)
            return
        except ConditionFailed as e:
            reasons = e.response.get("CancellationReasons") or []
            codes = [str(r.get("Code", "None")) for r in reasons]
            if "ConditionalCheckFailed" in codes:
                i = codes.index("ConditionalCheckFailed")
                raise conflict(i, prepared[i].op, None) from None
            if "ValidationError" in codes:
                message = str(reasons[codes.index("ValidationError")].get("Message", ""))
                error = ValueTooLargeError if "size" in message.lower() else BackendError
                raise error(f"{t.where}: transaction rejected: {message}") from None
            if any(c in THROTTLED or c.startswith("Throughput") for c in codes) or (
                attempt == TXN_CONFLICT_ATTEMPTS - 1
            ):
                raise BackendUnavailableError(
                    f"{t.where}: transaction cancelled ({', '.join(codes)}); "
                    "nothing was applied, retry"
                ) from None
            # TransactionConflict: another transaction held an item; nothing was applied.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay *= 2


def _add_condition(request: dict[str, Any], expect: int | None) -> None:
    if expect == 0:
        request["ConditionExpression"] = "attribute_not_exists(pk)"
    elif expect is not None:
        request["ConditionExpression"] = "v = :expect"
        request.setdefault("ExpressionAttributeValues", {})[":expect"] = {"N": str(expect)}


def _add_upsert(request: dict[str, Any], p: _Prepared) -> None:
    """An unconditional put as ``UpdateItem``: bump the version, set the rest, remove leftovers."""
    assert p.attrs is not None
    values = request.setdefault("ExpressionAttributeValues", {})
    values[":zero"] = {"N": "0"}
    values[":one"] = {"N": "1"}
    sets = ["v = if_not_exists(v, :zero) + :one"]
    removes: list[str] = []
    for name in ("b", "r", "d", "ds", TTL_ATTRIBUTE):
        if name in p.attrs:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = p.attrs[name]
        else:
            removes.append(name)
    request["UpdateExpression"] = f"SET {', '.join(sets)} REMOVE {', '.join(removes)}"
