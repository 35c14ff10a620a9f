"""Garbage collection of S3 blobs (``backends/dynamodb/blob_gc.py``).

Against DynamoDB Local and the session's (locked) moto S3 server, each test with a blob prefix of
its own in the shared bucket, so it can list exactly its blobs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from backends.api import (
    BackendError,
    BackendUnavailableError,
    Check,
    ConflictError,
    Delete,
    Item,
    Put,
)
from backends.dynamodb import MIN_GRACE_MS, DynamoDbBackend, encode_key
from backends.dynamodb import writes as ddb_writes
from backends.s3_blobs import BlobMissingError, blob_key, is_unique_key
from restate_lambda.clock import SystemClock
from tests.support.aws import dynamodb_backend

BIG = 64  # the tests' offload threshold: values longer than this go to S3
HOUR = 60 * 60 * 1000


def big(tag: str) -> bytes:
    """A value that is offloaded, distinct per ``tag``."""
    return tag.encode() * (BIG // len(tag) + 2)


@asynccontextmanager
async def store() -> AsyncIterator[DynamoDbBackend]:
    """A backend on a fresh table, offloading values over :data:`BIG` bytes to its own prefix."""
    prefix = f"gc-{uuid.uuid4().hex[:12]}/"
    async with dynamodb_backend(bucket=True, offload_threshold=BIG, blob_prefix=prefix) as b:
        yield b


def other_process(backend: DynamoDbBackend) -> DynamoDbBackend:
    """A second backend on the same table and bucket, with its own (empty) reference cache."""
    assert backend.blobs is not None
    return DynamoDbBackend(
        backend.table,
        client=backend.client,
        s3_client=backend.blobs.client,
        bucket=backend.blobs.bucket,
        blob_prefix=backend.blobs.prefix,
        offload_threshold=BIG,
        owns_clients=False,
    )


def blobs(backend: DynamoDbBackend) -> set[str]:
    """The keys of every blob under the backend's prefix."""
    assert backend.blobs is not None
    return {key for key, _ in backend.blobs.list_blobs()}


def ref(backend: DynamoDbBackend, pk: str, sk: str) -> str | None:
    """The blob key the stored item refers to (read raw), or ``None``."""
    raw = backend.client.get_item(
        TableName=backend.table,
        Key={"pk": {"S": encode_key(pk)}, "sk": {"S": encode_key(sk)}},
        ConsistentRead=True,
    ).get("Item")
    return None if raw is None or "r" not in raw else str(raw["r"]["S"])


def refs(backend: DynamoDbBackend, *keys: tuple[str, str]) -> set[str]:
    """The blob keys the given items refer to."""
    found = {ref(backend, pk, sk) for pk, sk in keys}
    return {r for r in found if r is not None}


class CountingClient:
    """A DynamoDB client proxy that counts calls per method."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(**kwargs)

        return call


def count_calls(backend: DynamoDbBackend) -> CountingClient:
    """Make the backend's table calls go through a :class:`CountingClient`."""
    counting = CountingClient(backend.client)
    backend._t.client = counting
    return counting


def later() -> int:
    """A "now" two hours ahead, so every blob written so far is past a one-hour grace period."""
    return SystemClock().now_ms() + 2 * HOUR


# -- eager deletion on the write path ----------------------------------------------------------


async def test_overwrite_deletes_the_old_blob() -> None:
    """Each kind of Put that replaces an offloaded value deletes the replaced blob."""
    async with store() as b:
        await b.write([Put("p", "a", big("v1"))])
        first = blobs(b)
        assert 1 == len(first) and first == refs(b, ("p", "a"))
        assert all(is_unique_key(k, b.blobs.prefix) for k in first)  # type: ignore[union-attr]
        await b.write([Put("p", "a", big("v2"), expect=1)])  # compare-and-set (PutItem)
        assert refs(b, ("p", "a")) == blobs(b) and first.isdisjoint(blobs(b))
        await b.write([Put("p", "a", big("v3"), expect=None)])  # unconditional (UpdateItem)
        assert refs(b, ("p", "a")) == blobs(b) and 1 == len(blobs(b))
        await b.write([Put("p", "a", b"small", expect=3)])  # replaced by an inline value
        assert set() == blobs(b)
        assert Item("p", "a", b"small", 4) == await b.get("p", "a")


async def test_overwrite_in_a_transaction_deletes_the_old_blobs() -> None:
    """Replacing and deleting offloaded items inside one transaction deletes their blobs."""
    async with store() as b:
        await b.write([Put("p", "a", big("a1")), Put("p", "b", big("b1")), Put("p", "c", b"c")])
        assert 2 == len(blobs(b))
        await b.write(
            [Put("p", "a", big("a2"), expect=1), Delete("p", "b", expect=1), Check("p", "c", 1)]
        )
        assert refs(b, ("p", "a")) == blobs(b) and 1 == len(blobs(b))
        assert [Item("p", "a", big("a2"), 2), Item("p", "c", b"c", 1)] == await b.query("p")


async def test_another_process_overwrite_learns_the_blob_from_the_guard() -> None:
    """A process that never saw the item still deletes its blob: the guard fails once, then not.

    The first attempt assumes no blob (``attribute_not_exists(r)``); its cancellation returns the
    stored item, the contract's condition holds, so the write is resent naming the blob.
    """
    async with store() as a:
        await a.write([Put("p", "a", big("a1")), Put("p", "b", big("b1"))])
        b = other_process(a)
        calls = count_calls(b)
        await b.write([Put("p", "a", big("a2"), expect=1)])
        assert 2 == calls.calls["put_item"]
        await b.write([Put("p", "b", big("b2"), expect=1), Put("p", "c", b"c")])
        assert 2 == calls.calls["transact_write_items"]
        assert refs(a, ("p", "a"), ("p", "b")) == blobs(a) and 2 == len(blobs(a))
        # Now b knows both blobs: its next overwrite needs one request.
        await b.write([Put("p", "a", big("a3"), expect=2)])
        assert 3 == calls.calls["put_item"]
        # a's cache is stale (it still names a1's blob): its guard fails once, and it recovers.
        await a.write([Delete("p", "a", expect=3), Delete("p", "b")])
        assert set() == blobs(a)
        assert [Item("p", "c", b"c", 1)] == await a.query("p")
        await b.close()


async def test_items_without_blobs_cost_no_extra_request() -> None:
    """With a bucket, overwrites of inline items still take one request each."""
    async with store() as b:
        calls = count_calls(b)
        await b.write([Put("p", "a", b"x")])
        await b.write([Put("p", "a", b"y", expect=1)])
        await b.write([Put("p", "a", b"z", expect=None)])
        await b.write([Put("p", "a", b"w", expect=3), Put("p", "b", b"v", expect=None)])
        await b.write([Delete("p", "b")])
        assert {"put_item": 2, "update_item": 1, "transact_write_items": 1, "delete_item": 1} == (
            calls.calls
        )


async def test_contract_conflicts_are_not_mistaken_for_guards() -> None:
    """A stale version still conflicts (index and message) when a blob guard is also present."""
    async with store() as a:
        await a.write([Put("p", "a", big("a1")), Put("p", "b", b"b")])
        b = other_process(a)
        with pytest.raises(ConflictError, match="found at version 1") as info:
            await b.write([Put("p", "a", big("x"), expect=7)])
        assert 0 == info.value.index
        with pytest.raises(ConflictError) as info:
            await b.write([Put("p", "b", b"c", expect=1), Put("p", "a", big("y"), expect=2)])
        assert 1 == info.value.index
        assert refs(a, ("p", "a")) == blobs(a) and 1 == len(blobs(a))
        await b.close()


async def test_deletes_delete_the_blob() -> None:
    """Delete with a version (transaction), without (DeleteItem), and delete_items."""
    async with store() as b:
        await b.write([Put("p", k, big(k)) for k in ("a", "b", "c", "d")])
        assert 4 == len(blobs(b))
        await b.write([Delete("p", "a", expect=1)])
        await b.write([Delete("p", "b")])
        assert refs(b, ("p", "c"), ("p", "d")) == blobs(b)
        await b.query("p")  # the engine reads what it purges
        await b.delete_items([("p", "c"), ("p", "d")])
        assert set() == blobs(b)


async def test_delete_items_of_unseen_items_leaves_blobs_to_the_sweep() -> None:
    """delete_items cannot see old values: blobs this process never saw wait for the sweep."""
    async with store() as a:
        await a.write([Put("p", "a", big("a")), Put("p", "b", big("b"))])
        b = other_process(a)
        await b.delete_items([("p", "a"), ("p", "b")])
        assert 2 == len(blobs(a))
        report = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (2, 0, 2) == (report.listed, report.live, report.deleted)
        assert set() == blobs(a)
        await b.close()


async def test_concurrent_overwriters_and_readers() -> None:
    """Two processes race compare-and-set overwrites while a third reads.

    No read fails on a deleted blob (it re-reads the item), every value read is one that was
    written, and only the last value's blob is left.
    """
    async with store() as a:
        await a.write([Put("p", "hot", big("v0"))])
        b, reader = other_process(a), other_process(a)
        written = {big("v0")}
        stop = False
        # The reader's first fetch of each read is slow, so writers often delete the blob it is
        # about to fetch; the re-read that follows is fast.
        assert reader.blobs is not None
        fetch, missing, slow = reader.blobs.get, [0], [True]

        def slow_get(key: str) -> bytes:
            if slow[0]:
                time.sleep(0.05)
            try:
                value = fetch(key)
            except BlobMissingError:
                missing[0] += 1
                slow[0] = False
                raise
            slow[0] = True
            return value

        reader.blobs.get = slow_get  # type: ignore[method-assign]

        async def writer(backend: DynamoDbBackend, name: str) -> int:
            wins = 0
            for i in range(8):
                while True:
                    item = await backend.get("p", "hot")
                    assert item is not None
                    value = big(f"{name}{i}")
                    written.add(value)
                    try:
                        await backend.write([Put("p", "hot", value, expect=item.version)])
                    except ConflictError:
                        continue
                    wins += 1
                    break
            return wins

        async def read_all() -> int:
            reads = 0
            while not stop:
                try:
                    item = await reader.get("p", "hot")
                except BackendUnavailableError:  # replaced faster than it could be read: retry
                    continue
                assert item is not None and item.value in written
                reads += 1
            return reads

        reading = asyncio.ensure_future(read_all())
        wins = await asyncio.gather(writer(a, "a"), writer(b, "b"))
        stop = True
        assert [8, 8] == wins and await reading > 0
        assert missing[0] > 0  # the race did happen, and every such read recovered
        final = await a.get("p", "hot")
        assert final is not None and 17 == final.version
        assert refs(a, ("p", "hot")) == blobs(a)
        await b.close()
        await reader.close()


# -- writes that do not apply ------------------------------------------------------------------


async def test_failed_conditions_delete_their_uploads() -> None:
    """A create of an existing item, a stale version or a failed Check leaves no new blob."""
    async with store() as b:
        await b.write([Put("p", "a", big("a1")), Put("p", "c", b"c")])
        before = blobs(b)
        with pytest.raises(ConflictError):
            await b.write([Put("p", "a", big("again"))])  # expect=0, single PutItem
        with pytest.raises(ConflictError):
            await b.write([Put("p", "a", big("stale"), expect=5)])
        with pytest.raises(ConflictError):  # a transaction whose Check fails
            await b.write([Put("p", "n", big("new")), Check("p", "c", 9)])
        with pytest.raises(ConflictError):  # an unconditional upsert fenced by a failing Check
            await b.write([Put("p", "u", big("up"), expect=None), Check("p", "c", 9)])
        assert before == blobs(b)
        assert Item("p", "a", big("a1"), 1) == await b.get("p", "a")


async def test_stale_uploads_are_not_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose uploads are older than MAX_UPLOAD_AGE_S is refused, and its blobs go."""
    async with store() as b:
        monkeypatch.setattr(ddb_writes, "MAX_UPLOAD_AGE_S", -1.0)
        with pytest.raises(BackendUnavailableError, match="uploaded to S3"):
            await b.write([Put("p", "a", big("a"))])
        assert await b.get("p", "a") is None
        assert set() == blobs(b)


class SimulatedCrash(BaseException):
    """The process dies (no cleanup runs)."""


async def test_crash_between_upload_and_write_is_swept() -> None:
    """A blob uploaded by a process that died before its write is kept while young, then swept."""
    async with store() as b:
        await b.write([Put("p", "live", big("live"))])
        real_call = b._t.call

        def crash(method: str, **kwargs: Any) -> dict[str, Any]:
            if method in ("put_item", "transact_write_items"):
                raise SimulatedCrash
            return real_call(method, **kwargs)

        b._t.call = crash  # type: ignore[method-assign]
        with pytest.raises(SimulatedCrash):
            await b.write([Put("p", "a", big("a")), Put("p", "b", b"b")])
        b._t.call = real_call  # type: ignore[method-assign]
        assert [Item("p", "live", big("live"), 1)] == await b.query("p")
        assert 2 == len(blobs(b))
        young = await b.sweep_blobs(grace_ms=HOUR)  # now: both are younger than the grace
        assert (2, 2, 0) == (young.listed, young.young, young.deleted)
        old = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (2, 0, 1, 1) == (old.listed, old.young, old.live, old.deleted)
        assert refs(b, ("p", "live")) == blobs(b)
        assert Item("p", "live", big("live"), 1) == await b.get("p", "live")


@pytest.mark.parametrize("applied", [True, False])
async def test_ambiguous_failures_keep_the_blob(applied: bool) -> None:
    """After a lost response the blob stays: the sweep keeps it if the write applied."""
    async with store() as b:
        real_call = b._t.call

        def lost_response(method: str, **kwargs: Any) -> dict[str, Any]:
            if method == "put_item":
                if applied:
                    real_call(method, **kwargs)
                raise BackendUnavailableError("read timeout")
            return real_call(method, **kwargs)

        b._t.call = lost_response  # type: ignore[method-assign]
        with pytest.raises(BackendUnavailableError):
            await b.write([Put("p", "a", big("a"))])
        b._t.call = real_call  # type: ignore[method-assign]
        assert 1 == len(blobs(b))
        report = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert ((1, 0) if applied else (0, 1)) == (report.live, report.deleted)
        if applied:
            assert Item("p", "a", big("a"), 1) == await b.get("p", "a")
        else:
            assert await b.get("p", "a") is None and set() == blobs(b)


# -- the sweep ---------------------------------------------------------------------------------


async def test_sweep_of_unowned_content_addressed_blobs() -> None:
    """Blobs of the older layout (no owner, maybe shared) are checked against a table scan."""
    async with store() as b:
        assert b.blobs is not None
        shared = big("legacy-shared")
        legacy = blob_key(shared, b.blobs.prefix)
        orphan = blob_key(big("legacy-orphan"), b.blobs.prefix)
        for key, value in ((legacy, shared), (orphan, big("legacy-orphan"))):
            b.blobs.client.put_object(Bucket=b.blobs.bucket, Key=key, Body=value)
        for sk in ("x", "y"):  # two items sharing one content-addressed blob
            b.client.put_item(
                TableName=b.table,
                Item={"pk": {"S": "p"}, "sk": {"S": sk}, "v": {"N": "1"}, "r": {"S": legacy}},
            )
        assert [Item("p", "x", shared, 1), Item("p", "y", shared, 1)] == await b.query("p")
        await b.write([Delete("p", "x", expect=1)])  # never deletes a shared blob eagerly
        assert {legacy, orphan} == blobs(b)
        report = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (2, 1, 1) == (report.unowned, report.live, report.deleted)
        assert {legacy} == blobs(b)
        assert Item("p", "y", shared, 1) == await b.get("p", "y")


async def test_sweep_after_expiry_and_foreign_deletes() -> None:
    """Items removed behind the backend's back (TTL, another tool) leave blobs the sweep finds."""
    async with store() as b:
        await b.write([Put("p", k, big(k), expires_ms=1_000) for k in ("a", "b", "c")])
        for sk in ("a", "b"):  # what DynamoDB's TTL deletion does
            b.client.delete_item(TableName=b.table, Key={"pk": {"S": "p"}, "sk": {"S": sk}})
        report = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (3, 1, 2, 0) == (report.listed, report.live, report.deleted, report.unowned)
        assert refs(b, ("p", "c")) == blobs(b)


async def test_sweep_leaves_other_tables_blobs_alone() -> None:
    """Two tables sharing a bucket and prefix: each sweep deletes only its own garbage."""
    prefix = f"gc-{uuid.uuid4().hex[:12]}/"
    async with (
        dynamodb_backend(bucket=True, offload_threshold=BIG, blob_prefix=prefix) as a,
        dynamodb_backend(bucket=True, offload_threshold=BIG, blob_prefix=prefix) as b,
    ):
        await a.write([Put("p", "a", big("a"))])
        await b.write([Put("p", "b", big("b"))])
        b.client.delete_item(TableName=b.table, Key={"pk": {"S": "p"}, "sk": {"S": "b"}})
        report = await a.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (2, 1, 1, 0) == (report.listed, report.foreign, report.live, report.deleted)
        report = await b.sweep_blobs(now_ms=later(), grace_ms=HOUR)
        assert (2, 1, 0, 1) == (report.listed, report.foreign, report.live, report.deleted)
        assert refs(a, ("p", "a")) == blobs(a)


async def test_sweep_arguments() -> None:
    """A grace period under an hour is refused; a backend without a bucket cannot sweep."""
    async with store() as b:
        with pytest.raises(ValueError, match="grace period"):
            await b.sweep_blobs(grace_ms=MIN_GRACE_MS - 1)
    async with dynamodb_backend() as plain:
        with pytest.raises(BackendError, match="no S3 bucket"):
            await plain.sweep_blobs()


# -- reads racing deletes ----------------------------------------------------------------------


async def test_reading_a_replaced_items_deleted_blob_returns_the_new_state() -> None:
    """A reader holding an older version whose blob was deleted re-reads the item."""
    async with store() as b:
        await b.write([Put("p", "a", big("a1")), Put("p", "b", big("b1"))])
        key = {"pk": {"S": "p"}, "sk": {"S": "a"}}
        stale_a = b.client.get_item(TableName=b.table, Key=key, ConsistentRead=True)["Item"]
        key_b = {"pk": {"S": "p"}, "sk": {"S": "b"}}
        stale_b = b.client.get_item(TableName=b.table, Key=key_b, ConsistentRead=True)["Item"]
        writer = other_process(b)
        await writer.write([Put("p", "a", big("a2"), expect=1), Delete("p", "b", expect=1)])
        assert Item("p", "a", big("a2"), 2) == b._t.decode(stale_a)
        assert b._t.decode(stale_b) is None  # deleted meanwhile
        # A blob missing while the item still refers to it is a real error.
        assert b.blobs is not None
        current = ref(b, "p", "a")
        assert current is not None
        b.blobs.delete([current])
        with pytest.raises(BlobMissingError, match="missing"):
            await b.get("p", "a")
        await writer.close()
