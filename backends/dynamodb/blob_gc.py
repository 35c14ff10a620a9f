"""Garbage collection of offloaded values (S3 blobs): what it guarantees, and the sweep.

A value too large for a DynamoDB item is uploaded to S3 *before* the write that refers to it
commits, so a blob can outlive every reference to it: its item is overwritten or deleted (by the
engine, or by DynamoDB's TTL), the write fails its condition, or the process dies between the
upload and the write. S3 lifecycle rules cannot tell referenced blobs from garbage, so the backend
collects them itself, in two ways:

**Eagerly, on the write path** (:mod:`backends.dynamodb.writes`):

* every upload gets a key of its own (:func:`backends.s3_blobs.new_blob_key`), recording its
  item as the blob's owner, so a blob belongs to exactly one version of one item;
* a write that replaces or deletes items learns the blobs they referred to (blob guards in the
  write's conditions, and :class:`~backends.dynamodb.blob_refs.RefCache` for ``delete_items``)
  and deletes those blobs once the write has committed;
* a write that certainly did not apply (a conflict, a rejected request, a failure before
  sending) deletes the blobs it uploaded.

**By a sweep** (:func:`sweep`, ``DynamoDbBackend.sweep_blobs``), for everything else: blobs left
by an ambiguous failure (a lost response), a crash, a failed best-effort delete, TTL expiry,
``delete_items`` of items this process never read, and blobs of the older content-addressed
layout. It lists the blobs older than a grace period and deletes each one its owner item does not
refer to (one consistent ``GetItem`` per blob; blobs without a recorded owner are checked
against a consistent scan of the table's ``r`` attributes, only when there are any). Blobs
recorded as another table's are left alone, so tables may share a bucket.

**Guarantees.**

1. *Safety: a blob is never deleted while a committed item refers to it*, given the timing
   assumption below. Eager deletes only touch blobs whose one referring item version is gone
   (replaced or deleted by a committed write) or was never written. The sweep only deletes a
   blob that is older than the grace period and not referred to by its owner; only the upload's
   own write can ever refer to a blob, and that write is refused once more than
   :data:`~backends.dynamodb.writes.MAX_UPLOAD_AGE_S` (10 minutes) passed since the upload
   began, so a blob older than the grace period that nothing refers to never will be.
2. *Completeness: every unreferenced blob is deleted* by the first sweep that runs at least a
   grace period after it became garbage (or at once by the eager path, in the common cases).
3. *Reads stay correct while blobs go*: a reader that fetched an item version just before a
   writer replaced it and deleted its blob re-reads the item and returns its newer state
   (:meth:`~backends.dynamodb.table.TableClient.decode`); an item replaced faster than its value
   downloads, eight times in a row, fails the read with a retryable ``BackendUnavailableError``.
4. *Nothing fails because of garbage*: eager deletes are best effort after the commit; a failed
   delete only leaves work for the sweep.

**Assumption.** One DynamoDB request, with botocore's own retries (about a minute at most with
the clients' timeouts), reaches DynamoDB within ``grace - MAX_UPLOAD_AGE_S`` of being sent, and
the sweeper's clock is within a few minutes of S3's (``LastModified``). The grace period is at
least :data:`MIN_GRACE_MS` (1 hour); the default is :data:`DEFAULT_GRACE_MS` (6 hours).

**Known limit.** If botocore retries a single-item create (a ``Put`` with ``expect=0`` sent
alone: ``PutItem``) whose first attempt applied, and within that retry window (seconds) another
writer deletes the item and its blob, the retry creates the item again, referring to the deleted
blob: reads of it then raise :class:`~backends.s3_blobs.BlobMissingError`. Without blobs the same
retry would resurrect the item itself (the ambiguity of single-item writes described in
:mod:`backends.dynamodb.writes`). Transactions are idempotent, compare-and-set retries fail their
condition, and the contract allows unconditioned operations only fenced in a batch (a
transaction), so this is the only case.

**Cost.** The sweep lists the bucket prefix (1 request per 1,000 blobs) and, per blob past the
grace period, one ``HeadObject`` and one consistent ``GetItem`` of a small item; run it hourly or
daily, not every minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from backends.api import BackendError
from backends.dynamodb.schema import item_key
from backends.dynamodb.table import TableClient
from backends.dynamodb.writes import MAX_UPLOAD_AGE_S
from backends.s3_blobs import BlobMissingError

#: Shortest grace period :func:`sweep` accepts (ms): the writers' upload age limit, plus room
#: for a request's retries and clock skew.
MIN_GRACE_MS: Final = 60 * 60 * 1000
#: Default grace period (ms).
DEFAULT_GRACE_MS: Final = 6 * 60 * 60 * 1000


@dataclass(slots=True)
class SweepReport:
    """What one sweep found.

    Attributes:
        listed: blobs under the prefix.
        young: blobs within the grace period, kept.
        live: blobs their item refers to, kept.
        deleted: unreferenced blobs deleted.
        unowned: blobs without a recorded owner, checked against a table scan.
        foreign: blobs of another table (sharing the bucket and prefix), left alone.
        failed: unreferenced blobs whose delete failed (the next sweep retries them).
    """

    listed: int = 0
    young: int = 0
    live: int = 0
    deleted: int = 0
    unowned: int = 0
    foreign: int = 0
    failed: int = 0


def sweep(
    t: TableClient, *, now_ms: int, grace_ms: int = DEFAULT_GRACE_MS, check_unowned: bool = True
) -> SweepReport:
    """Delete the blobs no item refers to that are older than ``grace_ms`` (blocking).

    Args:
        t: the table and its blob store.
        now_ms: the current time (epoch ms), compared with S3's ``LastModified``.
        grace_ms: blobs modified after ``now_ms - grace_ms`` are kept whatever their state.
        check_unowned: also delete blobs without a recorded owner (the older layout, or keys too
            long to record) that no item of *this* table refers to. Leave it on unless the
            bucket prefix holds such blobs of another table.

    Raises:
        ValueError: ``grace_ms`` is shorter than :data:`MIN_GRACE_MS`.
        BackendError: the table has no bucket configured.
    """
    if grace_ms < MIN_GRACE_MS:
        raise ValueError(
            f"the grace period must be at least {MIN_GRACE_MS} ms (writers may still commit "
            f"blobs up to {MAX_UPLOAD_AGE_S:.0f} s after uploading them), got {grace_ms}"
        )
    blobs = t.blobs
    if blobs is None:
        raise BackendError(f"{t.where} has no S3 bucket configured: there are no blobs to sweep")
    cutoff = now_ms - grace_ms
    report = SweepReport()
    garbage: list[str] = []
    unowned: list[str] = []
    for key, modified_ms in blobs.list_blobs():
        report.listed += 1
        if modified_ms > cutoff:
            report.young += 1
            continue
        try:
            table, owner = blobs.owner(key)
        except BlobMissingError:
            continue  # deleted since the listing
        if table is not None and table != t.name:
            report.foreign += 1  # another table's blob in a shared bucket
            continue
        if owner is None:
            if check_unowned:
                unowned.append(key)
            continue
        raw = t.call(
            "get_item",
            TableName=t.name,
            Key=item_key(*owner),
            ConsistentRead=True,
            ProjectionExpression="r",
        ).get("Item")
        if raw is not None and raw.get("r", {}).get("S") == key:
            report.live += 1
        else:
            garbage.append(key)
    if unowned:
        report.unowned = len(unowned)
        referenced = _referenced(t)
        for key in unowned:
            if key in referenced:
                report.live += 1
            else:
                garbage.append(key)
    failed = blobs.delete(garbage) if garbage else []
    report.failed = len(failed)
    report.deleted = len(garbage) - len(failed)
    return report


def _referenced(t: TableClient) -> set[str]:
    """Every blob key the table's items refer to (a consistent scan of ``r``)."""
    request: dict[str, Any] = {
        "TableName": t.name,
        "ProjectionExpression": "r",
        "FilterExpression": "attribute_exists(r)",
        "ConsistentRead": True,
    }
    refs: set[str] = set()
    while True:
        page = t.call("scan", **request)
        refs.update(str(raw["r"]["S"]) for raw in page.get("Items", []))
        more = page.get("LastEvaluatedKey")
        if more is None:
            return refs
        request["ExclusiveStartKey"] = more
