"""In-memory backend: a verified fake of the storage contract for tests and ``memory://``.

Layout: one :class:`_Partition` per partition key holding ``sk -> Item`` plus the partition's sort
keys as a sorted list (``bisect``), a sorted list of non-empty partition keys (for ``scan``), and
a sorted due index of ``(due_ms, pk, sk)`` tuples (for ``due``). Python compares strings by code
point, which is the UTF-8 byte order the contract asks for.

Concurrency: each operation yields to the event loop once (so concurrent tasks interleave like
they do against a real store and conflicts really happen in tests), then runs its check-and-apply
without awaiting, under a ``threading.Lock`` so that several event loops may share one instance.
Nothing is durable: the data lives as long as the object.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from backends._batch import (
    check_key,
    check_limit,
    check_query,
    prefix_upper_bound,
    validate_batch,
)
from backends.api import Check, ConflictError, Delete, Item, Put, WriteOp


@dataclass(slots=True)
class _Partition:
    items: dict[str, Item] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted sort keys of ``items``


class MemoryBackend:
    """A dict-backed :class:`~backends.api.Backend`; passes the whole conformance suite."""

    max_value_bytes: int = 64 * 1024 * 1024
    max_batch_ops: int = 10_000
    supports_expiry: bool = False

    def __init__(self) -> None:
        """Create an empty store."""
        self._parts: dict[str, _Partition] = {}
        self._pks: list[str] = []  # sorted keys of non-empty partitions
        self._due: list[tuple[int, str, str]] = []  # sorted (due_ms, pk, sk)
        self._lock = threading.Lock()
        self._closed = False

    # -- reads -------------------------------------------------------------------------------

    async def get(self, pk: str, sk: str) -> Item | None:
        """Return the item, or ``None``."""
        check_key(pk, sk)
        await self._yield()
        with self._lock:
            part = self._parts.get(pk)
            return None if part is None else part.items.get(sk)

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """Items of ``pk`` whose sort key starts with ``prefix``, in sort-key order."""
        check_query(pk, prefix, after, limit)
        await self._yield()
        with self._lock:
            part = self._parts.get(pk)
            if part is None or limit == 0:
                return []
            keys = part.keys
            lo = bisect.bisect_left(keys, prefix)
            upper = prefix_upper_bound(prefix)
            hi = len(keys) if upper is None else bisect.bisect_left(keys, upper, lo)
            if after is not None:
                if reverse:
                    hi = min(hi, bisect.bisect_left(keys, after, lo))
                else:
                    lo = max(lo, bisect.bisect_right(keys, after, lo))
            if lo >= hi:
                return []
            if reverse:
                start = lo if limit is None else max(lo, hi - limit)
                selected = keys[start:hi][::-1]
            else:
                selected = keys[lo:hi] if limit is None else keys[lo : min(hi, lo + limit)]
            return [part.items[sk] for sk in selected]

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """Items with ``due_ms <= until_ms`` ordered by ``(due_ms, pk, sk)``, at most ``limit``."""
        check_limit(limit)
        await self._yield()
        with self._lock:
            out: list[Item] = []
            for due_ms, pk, sk in self._due:
                if due_ms > until_ms or len(out) >= limit:
                    break
                out.append(self._parts[pk].items[sk])
            return out

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the items at ``keys``; absent ones are ignored."""
        for pk, sk in keys:
            await self.write([Delete(pk, sk)])

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """Items whose pk starts with ``pk_prefix`` and whose sort key is ``sk``, by pk."""
        check_key(pk_prefix, sk)
        check_limit(limit)
        await self._yield()
        with self._lock:
            out: list[Item] = []
            start = bisect.bisect_left(self._pks, pk_prefix)
            for pk in self._pks[start:]:
                if not pk.startswith(pk_prefix) or (limit is not None and len(out) >= limit):
                    break
                item = self._parts[pk].items.get(sk)
                if item is not None:
                    out.append(item)
            return out

    # -- writes ------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically, or raise ``ConflictError`` naming the first failing op."""
        validate_batch(ops, max_ops=self.max_batch_ops, max_value_bytes=self.max_value_bytes)
        await self._yield()
        with self._lock:
            # Keys are distinct within a batch, so checking every condition first and applying
            # afterwards is the same as applying in order with rollback on failure.
            for i, op in enumerate(ops):
                if op.expect is None:
                    continue
                part = self._parts.get(op.pk)
                current = None if part is None else part.items.get(op.sk)
                if op.expect == 0:
                    if current is not None:
                        raise ConflictError(f"item {op.pk!r}/{op.sk!r} exists", index=i)
                elif current is None or current.version != op.expect:
                    found = "absent" if current is None else f"at version {current.version}"
                    raise ConflictError(
                        f"item {op.pk!r}/{op.sk!r} expected at version {op.expect}, {found}",
                        index=i,
                    )
            for op in ops:
                if isinstance(op, Put):
                    self._put(op)
                elif isinstance(op, Delete):
                    self._delete(op.pk, op.sk)
                else:
                    assert isinstance(op, Check)

    def _put(self, op: Put) -> None:
        part = self._parts.get(op.pk)
        if part is None:
            part = self._parts[op.pk] = _Partition()
            bisect.insort(self._pks, op.pk)
        old = part.items.get(op.sk)
        if old is None:
            bisect.insort(part.keys, op.sk)
            version = 1
        else:
            version = old.version + 1
            self._unindex_due(old)
        item = Item(op.pk, op.sk, bytes(op.value), version, op.due_ms)
        part.items[op.sk] = item
        if item.due_ms is not None:
            bisect.insort(self._due, (item.due_ms, item.pk, item.sk))

    def _delete(self, pk: str, sk: str) -> None:
        part = self._parts.get(pk)
        if part is None:
            return
        old = part.items.pop(sk, None)
        if old is None:
            return
        del part.keys[bisect.bisect_left(part.keys, sk)]
        self._unindex_due(old)
        if not part.items:
            del self._parts[pk]
            del self._pks[bisect.bisect_left(self._pks, pk)]

    def _unindex_due(self, item: Item) -> None:
        if item.due_ms is not None:
            del self._due[bisect.bisect_left(self._due, (item.due_ms, item.pk, item.sk))]

    # -- lifecycle ---------------------------------------------------------------------------

    async def _yield(self) -> None:
        if self._closed:
            raise RuntimeError("MemoryBackend is closed")
        # One suspension point per call, like a real round trip: lets concurrent tasks interleave.
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Mark the backend closed; later calls raise ``RuntimeError``. Idempotent."""
        self._closed = True
