"""The write paths: the contract's conditional batches as DynamoDB requests (blocking).

**Contract rule -> DynamoDB.**

==============================  ==================================================================
Put ``expect=0``                ``PutItem`` + ``attribute_not_exists(pk)``, ``v = 1``
Put ``expect=n``                ``PutItem`` + ``v = :n``, ``v = n + 1`` (full replace: clears ``d``)
Put ``expect=None``             ``UpdateItem SET v = if_not_exists(v, 0) + 1, b = ... REMOVE ...``
Delete ``expect=None`` / ``0``  ``DeleteItem`` (+ ``attribute_not_exists(pk)`` for 0)
(with a bucket)                 every replacing or deleting op also pins the item's blob (below)
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
``offload_threshold`` (350 000 bytes) are uploaded to S3 first (:mod:`backends.s3_blobs`, a new
key per upload) and the item stores the reference ``r``; reads fetch and verify it transparently.
A batch whose inline values add up to more than :data:`~backends.dynamodb.schema.TXN_BUDGET_BYTES`
offloads its largest values until it fits.

**Blob guards** (only with a bucket). To delete the blob an overwritten or deleted item referred
to, the write must know it, but a transaction returns no old values. So every Put or Delete that
may replace an item (``expect`` other than 0) also conditions on the item's current blob:
``attribute_not_exists(r)``, or ``r = :ref`` when :class:`~backends.dynamodb.blob_refs.RefCache`
knows one. Items without a blob, the common case, pass the first guess at no extra cost. When
only a guard fails (the cancellation reason's item, via ``ReturnValuesOnConditionCheckFailure``,
still satisfies the contract's condition), the write learns the item's blob and is sent again;
nothing was applied in between. Once a write commits, the blobs it replaced are deleted, and if
it certainly did not apply (a conflict, a rejection, or a failure before sending) the blobs it
uploaded are deleted; after an ambiguous failure they are left to the sweep
(:mod:`backends.dynamodb.blob_gc`, which states the guarantees). A batch whose first upload
started more than :data:`MAX_UPLOAD_AGE_S` ago is not sent (:class:`NotAppliedError`), which is
what lets the sweep treat older unreferenced blobs as garbage.
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
    ConflictError,
    Delete,
    Put,
    ValueTooLargeError,
    WriteOp,
)
from backends.dynamodb.errors import (
    THROTTLED,
    ConditionFailed,
    NotAppliedError,
    TransactionConflict,
    conflict,
)
from backends.dynamodb.schema import (
    INLINE_MAX_BYTES,
    TTL_ATTRIBUTE,
    TXN_BUDGET_BYTES,
    due_shard,
    item_key,
)
from backends.dynamodb.table import TableClient

#: Attempts at one write: each ``TransactionConflict`` or failed blob guard costs one (nothing
#: is applied by either).
WRITE_ATTEMPTS: Final = 6
#: A batch is not sent once this long has passed since its first blob upload began (seconds).
#: The blob sweep's grace period must be longer (see :mod:`backends.dynamodb.blob_gc`).
MAX_UPLOAD_AGE_S: Final = 600.0


@dataclass(slots=True)
class _Prepared:
    """One operation in DynamoDB terms."""

    op: WriteOp
    key: dict[str, Any]
    attrs: dict[str, Any] | None = None  # a Put's full item (inline value or blob reference)
    value: bytes | None = None  # a Put's value while it is still inline
    size: int = 0  # estimated item size in bytes
    new_ref: str | None = None  # the blob uploaded for this Put
    guarded: bool = False  # the condition also pins the item's current blob ...
    old_ref: str | None = None  # ... to this key (None: to no blob at all)


def write_batch(t: TableClient, ops: list[WriteOp], offload_threshold: int) -> None:
    """Apply a validated batch atomically (see the module docstring for the mapping).

    Raises:
        ConflictError: a condition failed.
        ValueTooLargeError: the batch does not fit a transaction, even with offloading.
        BackendUnavailableError: throttled, timed out or unreachable after retries.
    """
    _BatchWrite(t, ops, offload_threshold).run()


def delete_keys(t: TableClient, keys: list[tuple[str, str]]) -> None:
    """Delete ``keys`` with ``BatchWriteItem`` (25 a request, not atomic, no conditions).

    ``BatchWriteItem`` neither returns nor conditions on old values: the blobs deleted with the
    items are the ones :class:`~backends.dynamodb.blob_refs.RefCache` knows (typically all of
    them, since the engine reads what it purges); others are left to the sweep.
    """
    for start in range(0, len(keys), 25):
        chunk = keys[start : start + 25]
        requests = [{"DeleteRequest": {"Key": item_key(pk, sk)}} for pk, sk in chunk]
        pending: dict[str, Any] = {t.name: requests}
        delay = 0.01
        while pending:
            page = t.call("batch_write_item", RequestItems=pending)
            pending = page.get("UnprocessedItems") or {}
            if pending:
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)
        garbage = [t.refs.pop(pk, sk) for pk, sk in chunk]
        t.delete_blobs(ref for ref in garbage if ref is not None)


class _BatchWrite:
    """One call of :func:`write_batch`: its prepared operations, uploads and outcome."""

    def __init__(self, t: TableClient, ops: list[WriteOp], offload_threshold: int) -> None:
        self.t = t
        self.ops = ops
        self.offload_threshold = offload_threshold
        self.prepared: list[_Prepared] = []
        self.uploaded: list[str] = []  # blobs uploaded by this write
        self.first_upload: float | None = None  # time.monotonic() when the first one began
        self.sent = False  # a write request has gone out

    def run(self) -> None:
        try:
            self._prepare()
            if len(self.prepared) == 1:
                self._write_one(self.prepared[0])
            else:
                self._transact(self.prepared)
        except Exception as e:
            # A crash (BaseException) cleans nothing up, like a real one: the sweep does.
            if self.uploaded and _certainly_not_applied(e, self.sent):
                self.t.delete_blobs(self.uploaded)
            raise
        self._committed()

    def _committed(self) -> None:
        """Record what the items refer to now; delete the blobs they no longer refer to."""
        garbage: list[str] = []
        own = set(self.uploaded)
        for p in self.prepared:
            op = p.op
            if isinstance(op, Check):
                continue
            if p.guarded and p.old_ref is not None and p.old_ref not in own:
                garbage.append(p.old_ref)
            self.t.refs.seen(op.pk, op.sk, p.new_ref if isinstance(op, Put) else None)
        self.t.delete_blobs(garbage)

    # -- preparing -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Map ops to items; offload values that are too big alone or for the batch's budget."""
        t = self.t
        prepared = self.prepared
        for op in self.ops:
            key = item_key(op.pk, op.sk)
            size = len(key["pk"]["S"].encode()) + len(key["sk"]["S"].encode()) + 64
            if isinstance(op, Put):
                value = bytes(op.value)
                p = _Prepared(op, key, value=value, size=size + len(value))
            else:
                p = _Prepared(op, key, size=size)
            if t.blobs is not None and not isinstance(op, Check) and op.expect != 0:
                p.guarded = True
                p.old_ref = t.refs.get(op.pk, op.sk)
            prepared.append(p)
        for p in prepared:
            if p.value is not None and len(p.value) > self.offload_threshold:
                self._offload(p)
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
                self._offload(p)
                total -= before - p.size
        for p in prepared:
            if isinstance(p.op, Put):
                attrs = dict(p.key)
                attrs["v"] = {"N": str(1 if not p.op.expect else p.op.expect + 1)}
                if p.value is not None:
                    attrs["b"] = {"B": p.value}
                else:
                    assert p.new_ref is not None
                    attrs["r"] = {"S": p.new_ref}
                if p.op.due_ms is not None:
                    attrs["d"] = {"N": str(p.op.due_ms)}
                    attrs["ds"] = {"S": due_shard(p.op.pk, p.op.sk)}
                if p.op.expires_ms is not None:
                    # TTL wants epoch seconds; round up so nothing goes before its time.
                    attrs[TTL_ATTRIBUTE] = {"N": str(-(-p.op.expires_ms // 1000))}
                p.attrs = attrs

    def _offload(self, p: _Prepared) -> None:
        assert p.value is not None
        blobs = self.t.blobs
        if blobs is None:  # validate_batch already rejects these; belt and braces
            raise ValueTooLargeError(
                f"value of {len(p.value)} bytes for {p.op.pk!r}/{p.op.sk!r} exceeds "
                f"{INLINE_MAX_BYTES} bytes (DynamoDB items hold 400 KB); configure an S3 bucket "
                "(dynamodb://TABLE?bucket=...) to store large values"
            )
        if self.first_upload is None:
            self.first_upload = time.monotonic()
        ref = blobs.put(p.value, owner=(p.op.pk, p.op.sk))
        self.uploaded.append(ref)
        p.size -= len(p.value) - len(ref)
        p.new_ref = ref
        p.value = None

    def _sending(self) -> None:
        """Called right before each write request: refuse to send one with stale uploads."""
        if self.first_upload is not None:
            age = time.monotonic() - self.first_upload
            if age > MAX_UPLOAD_AGE_S:
                raise NotAppliedError(
                    f"{self.t.where}: the batch's values were uploaded to S3 {age:.0f} s ago, "
                    f"more than {MAX_UPLOAD_AGE_S:.0f} s; not sent (they may be swept), retry"
                )
        self.sent = True

    # -- one item ------------------------------------------------------------------------------

    def _write_one(self, p: _Prepared) -> None:
        t = self.t
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
            self._transact([p])  # idempotent retries for fire-once claims
            return
        delay = 0.005
        for attempt in range(WRITE_ATTEMPTS):
            request: dict[str, Any] = {"TableName": t.name}
            _add_condition(request, p)
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
            if "ConditionExpression" in request:
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            self._sending()
            try:
                t.call(method, **request)
                return
            except TransactionConflict as e:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise NotAppliedError(
                        f"{t.where}: {method} kept colliding with transactions on "
                        f"{op.pk!r}/{op.sk!r} ({e}); nothing was applied, retry"
                    ) from e
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
            except ConditionFailed as e:
                old = e.response.get("Item")
                if e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0 and (
                    (method == "put_item" and old == p.attrs)
                    or (p.new_ref is not None and _ref(old) == p.new_ref)
                ):
                    return  # our first attempt applied; its response was lost
                if not p.guarded or _contract_fails(op, old):
                    version = None if old is None else int(old["v"]["N"])
                    raise conflict(0, op, version, old is None) from None
                p.old_ref = _ref(old)  # only the blob guard failed: learn and resend
        raise _kept_changing(t)

    # -- transactions --------------------------------------------------------------------------

    def _transact(self, prepared: list[_Prepared]) -> None:
        t = self.t
        delay = 0.005
        for attempt in range(WRITE_ATTEMPTS):
            items = [_transact_item(t, p) for p in prepared]
            self._sending()
            try:
                # botocore fills in ClientRequestToken, so its own retries are idempotent.
                t.call("transact_write_items", TransactItems=items)
                return
            except ConditionFailed as e:
                reasons = e.response.get("CancellationReasons") or []
                codes = [str(r.get("Code", "None")) for r in reasons]
                if "ConditionalCheckFailed" in codes:
                    self._learn_or_raise(prepared, reasons, codes)
                    continue  # only blob guards failed: resend with what was learned
                if "ValidationError" in codes:
                    message = str(reasons[codes.index("ValidationError")].get("Message", ""))
                    error = ValueTooLargeError if "size" in message.lower() else BackendError
                    raise error(f"{t.where}: transaction rejected: {message}") from None
                if any(c in THROTTLED or c.startswith("Throughput") for c in codes) or (
                    attempt == WRITE_ATTEMPTS - 1
                ):
                    raise NotAppliedError(
                        f"{t.where}: transaction cancelled ({', '.join(codes)}); "
                        "nothing was applied, retry"
                    ) from None
                # TransactionConflict: another transaction held an item; nothing was applied.
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
        raise _kept_changing(t)

    def _learn_or_raise(
        self, prepared: list[_Prepared], reasons: list[dict[str, Any]], codes: list[str]
    ) -> None:
        """Raise the first contract conflict; else record the blobs the failed guards found."""
        learned: list[tuple[_Prepared, str | None]] = []
        for i, (p, code) in enumerate(zip(prepared, codes, strict=False)):
            if code != "ConditionalCheckFailed":
                continue
            old = reasons[i].get("Item")
            if not p.guarded:
                raise conflict(i, p.op, None) from None
            if _contract_fails(p.op, old):
                found = None if old is None else int(old["v"]["N"])
                raise conflict(i, p.op, found, old is None) from None
            learned.append((p, _ref(old)))
        for p, ref in learned:
            p.old_ref = ref


def _certainly_not_applied(error: Exception, sent: bool) -> bool:
    """Whether a failed write certainly changed nothing (so its uploads are garbage now)."""
    if not sent or isinstance(error, ConflictError | NotAppliedError | ValueError):
        return True
    # Other backend errors are rejections (4xx); unavailability after sending is ambiguous.
    return isinstance(error, BackendError) and not isinstance(error, BackendUnavailableError)


def _kept_changing(t: TableClient) -> NotAppliedError:
    return NotAppliedError(
        f"{t.where}: the items' stored values kept changing during the write (or it kept "
        "colliding with transactions); nothing was applied, retry"
    )


def _ref(raw: dict[str, Any] | None) -> str | None:
    """The blob key a raw item refers to, if any."""
    if raw is None or "r" not in raw:
        return None
    return str(raw["r"]["S"])


def _contract_fails(op: WriteOp, old: dict[str, Any] | None) -> bool:
    """Whether the contract's own condition (``expect``) fails on the stored item ``old``."""
    if op.expect is None:
        return False
    if op.expect == 0:
        return old is not None
    return old is None or int(old["v"]["N"]) != op.expect


def _transact_item(t: TableClient, p: _Prepared) -> dict[str, Any]:
    """One ``TransactItems`` entry."""
    op = p.op
    entry: dict[str, Any] = {"TableName": t.name}
    _add_condition(entry, p)
    if p.guarded:
        entry["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if isinstance(op, Put):
        if op.expect is None:
            entry["Key"] = p.key
            _add_upsert(entry, p)
            return {"Update": entry}
        entry["Item"] = p.attrs
        return {"Put": entry}
    entry["Key"] = p.key
    return {"Delete": entry} if isinstance(op, Delete) else {"ConditionCheck": entry}


def _add_condition(request: dict[str, Any], p: _Prepared) -> None:
    """The contract's condition on ``expect``, and the blob guard if the op has one."""
    parts: list[str] = []
    values: dict[str, Any] = {}
    expect = p.op.expect
    if expect == 0:
        parts.append("attribute_not_exists(pk)")
    elif expect is not None:
        parts.append("v = :expect")
        values[":expect"] = {"N": str(expect)}
    if p.guarded:
        if p.old_ref is None:
            parts.append("attribute_not_exists(r)")
        else:
            parts.append("r = :oldref")
            values[":oldref"] = {"S": p.old_ref}
    if parts:
        request["ConditionExpression"] = " AND ".join(parts)
    if values:
        request.setdefault("ExpressionAttributeValues", {}).update(values)


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
