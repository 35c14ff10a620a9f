"""Virtual object keys: one exclusive invocation at a time, the others queued in FIFO order.

Each key has a lock record (``obj/{service}/{key}`` / ``lock``: holder, inbox head and tail)
and an inbox of queued invocation ids (``q/{seq}``). An exclusive invocation takes the lock when
it is created if the key is free, else it is queued (status INBOXED). When the holder completes,
the lock passes to the head of the inbox *in the holder's completion commit* when that can be
decided from what is stored (:meth:`ObjectLocks.handover`), otherwise through a ``release``
outbox effect of that commit (:meth:`ObjectLocks.release`); either way a completion never leaves
its key locked.

Lock records are cached after this engine writes them (reads saved on hot keys); every write is
a compare-and-set and a conflict drops the cached copy, so the cache can only cost a retry.

On an engine that is the store's only one (``sole``), a blocking call that finds its key free
is not written before it runs: its first commit creates it together with the lock
(:meth:`ObjectLocks.enqueue`, :class:`~invoker.ports.DeferredLock`), and until then the key is
reserved in this process, so other requests for it wait for that commit and queue behind.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from backends.api import ConflictError, Delete, Item, Put, WriteOp
from invoker import journal, keys
from invoker import records as rec
from invoker.commit import Committer, CommitUnknownError
from invoker.journal import decode_segment
from invoker.policies import Leases
from invoker.ports import Claimed, DeferredLock, Dispatch
from invoker.processing import Entry
from invoker.store import Store, decode_invocation, decode_lock
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.locks")


@dataclass(slots=True)
class Handover:
    """Writes that pass a key's lock on, and who gets it (claimed here, or an id to dispatch)."""

    ops: list[WriteOp]
    next: Claimed | str | None


class ObjectLocks:
    """Takes, queues behind and passes on virtual object locks."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        leases: Leases,
        dispatch: Dispatch,
        *,
        sole: bool = False,
    ) -> None:
        """``sole``: no other engine uses this store (``restate-lambda dev`` on the store in
        the data directory it holds locked); blocking calls may then take a free key's lock in
        their first commit (see :meth:`enqueue`), and a key without a lock record is
        remembered as such (every lock record is written by this process, through this
        class, which updates or forgets what it remembers)."""
        self._store = store
        self._backend = store.backend
        self._committer = committer
        self._clock = clock
        self._leases = leases
        self._dispatch = dispatch
        self._mutexes: dict[tuple[str, str], asyncio.Lock] = {}
        #: Lock records as last written or read here (None: the key has none; sole only).
        self._cache: dict[str, Item | None] = {}
        #: Counts changes to ``_cache``: a read remembers an absent record only if nothing
        #: was written or forgotten while it ran.
        self._changes = 0
        self._sole = sole
        #: Keys whose lock a deferred creation holds in memory only, until its first commit.
        self._reserved: dict[str, asyncio.Event] = {}

    def mutex(self, service: str, key: str) -> asyncio.Lock:
        """This process's mutex of one key (serializes its own writers of the lock record)."""
        lock = self._mutexes.get((service, key))
        if lock is None:
            if len(self._mutexes) > 10_000:
                self._mutexes = {k: v for k, v in self._mutexes.items() if v.locked()}
            lock = self._mutexes[(service, key)] = asyncio.Lock()
        return lock

    async def _read(self, opk: str) -> Item | None:
        if opk in self._cache:
            return self._cache[opk]
        changes = self._changes
        item = await self._backend.get(opk, keys.LOCK)
        if item is None and self._sole and changes == self._changes:
            self._remember(opk, None)
        return item

    def _remember(self, opk: str, item: Item | None) -> None:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[opk] = item
        self._changes += 1

    def _wrote(self, put: Put) -> None:
        self._remember(put.pk, Item(put.pk, put.sk, put.value, (put.expect or 0) + 1))

    def forget(self, opk: str) -> None:
        """Drop a cached lock record (after a conflict, or a write that bypassed the cache)."""
        self._cache.pop(opk, None)
        self._changes += 1

    def wrote_ops(self, ops: list[WriteOp]) -> None:
        """Remember lock records among ``ops`` (just committed)."""
        for op in ops:
            if isinstance(op, Put) and op.sk == keys.LOCK:
                self._wrote(op)

    async def enqueue(
        self,
        inv: rec.Invocation,
        ops: list[WriteOp],
        entries: list[tuple[int, bytes]],
        *,
        meta_version: int = 0,
        run_here: bool = False,
        defer: bool = False,
    ) -> tuple[rec.Invocation, bool]:
        """Create (``meta_version`` 0) or move (a scheduled one, at ``meta_version``) an
        exclusive invocation: it takes the key's lock if free, else joins the inbox.

        ``defer`` (a blocking call with a random id, on a ``sole`` engine): when the key is
        free, nothing is written now; the invocation runs at once and its first commit creates
        it, taking the lock or, if that commit completes it, checking the lock is still free
        (one commit for a call instead of two). Until then the key is reserved in memory and
        later calls for it wait here. A crash before that commit loses nothing acknowledged.

        Returns the invocation and whether this call created or moved it (False: it existed).
        """
        assert inv.key is not None
        opk = keys.obj(inv.service, inv.key)
        while (reserved := self._reserved.get(opk)) is not None:
            await reserved.wait()
        async with self.mutex(inv.service, inv.key):
            while (reserved := self._reserved.get(opk)) is not None:
                await reserved.wait()  # reserved while this call waited for the mutex
            return await self._enqueue(inv, ops, entries, opk, meta_version, run_here, defer)

    async def _enqueue(
        self,
        inv: rec.Invocation,
        ops: list[WriteOp],
        entries: list[tuple[int, bytes]],
        opk: str,
        meta_version: int,
        run_here: bool,
        defer: bool,
    ) -> tuple[rec.Invocation, bool]:
        """:meth:`enqueue` under the key's mutex."""
        pk = keys.inv(inv.id)
        for _ in range(100):
            now = self._clock.now_ms()
            item = await self._read(opk)
            lock = decode_lock(item.value) if item else rec.LockRecord()
            version = item.version if item else 0
            extra: list[WriteOp] = []
            claimed = False
            if lock.holder is None and lock.head == lock.tail:
                lock.holder = inv.id
                inv.status, due, claimed = self._leases.initial(inv, now, run_here)
                if claimed and defer and self._sole and not meta_version:
                    take = Put(opk, keys.LOCK, rec.encode(lock), expect=version)
                    self._dispatch.dispatch(inv.id, self._deferred(inv, ops, entries, take))
                    return inv, True
            else:
                inv.status = rec.Status.INBOXED
                due = None
                extra.append(Put(opk, keys.inbox(lock.tail), inv.id.encode()))
                lock.tail += 1
            meta = Put(pk, keys.META, rec.encode(inv), expect=meta_version, due_ms=due)
            lock_put = Put(opk, keys.LOCK, rec.encode(lock), expect=version)
            try:
                await self._committer.write([meta, *ops, lock_put, *extra])
            except CommitUnknownError:
                self.forget(opk)
                self._dispatch.dispatch(inv.id)  # maybe stored under this engine's lease
                raise
            except ConflictError as exc:
                self.forget(opk)
                current = await self._store.invocation(inv.id)
                if meta_version:
                    if current is None or current.version != meta_version:
                        return await self._existing(inv.id), False
                    continue
                if exc.index == 0 or current is not None:
                    return await self._existing(inv.id), False
                continue
            self._wrote(lock_put)
            if claimed:
                self._dispatch.dispatch(inv.id, Claimed(inv, meta_version + 1, entries))
            elif inv.status == rec.Status.READY:
                self._dispatch.dispatch(inv.id)
            return inv, True
        raise ConflictError(f"too much contention on {inv.service}/{inv.key}")

    def _deferred(
        self, inv: rec.Invocation, ops: list[WriteOp], entries: list[tuple[int, bytes]], take: Put
    ) -> Claimed:
        """Reserve ``take``'s key for ``inv``, created by its first commit (see :meth:`enqueue`)."""
        opk = take.pk
        reserved = self._reserved[opk] = asyncio.Event()

        def release(took: bool | None) -> None:
            if self._reserved.get(opk) is not reserved:
                return  # released before
            del self._reserved[opk]
            if took:
                self._wrote(take)  # stored: the lock is held
            elif took is None:
                self.forget(opk)  # maybe stored: the next reader asks the store
            # (False: only checked; the cached record, if any, is still the stored one)
            reserved.set()

        return Claimed(
            inv, 0, entries, unsaved=list(ops), deferred_lock=DeferredLock(take, release)
        )

    async def _existing(self, inv_id: str) -> rec.Invocation:
        found = await self._store.invocation(inv_id)
        if found is None:
            raise ConflictError(f"invocation {inv_id} was concurrently purged")
        return found.inv

    async def _inboxed_journal(self, inv: rec.Invocation) -> list[Entry] | None:
        """A queued invocation's journal (its input, or a restarted one's copied journal): the
        record's tail, after the creation segment ``j/0`` when there is one (None: missing)."""
        if not journal.in_segments(inv):
            return list(inv.tail)
        segment = await self._backend.get(keys.inv(inv.id), keys.journal(0))
        if segment is None:
            return None
        return [*decode_segment(segment.value), *inv.tail]

    async def handover(self, service: str, key: str, holder: str) -> Handover | None:
        """Writes that pass ``service/key``'s lock from ``holder`` to the next queued invocation
        (or free it), to commit together with the holder's completion.

        None when it cannot be decided from a consistent read (the next queued invocation
        completed while it waited): the completion then carries a ``release`` effect instead.
        """
        opk = keys.obj(service, key)
        item = await self._read(opk)
        lock = decode_lock(item.value) if item is not None else None
        if lock is None or lock.holder != holder:
            # Deciding to write nothing must not rest on a cached copy: read the record.
            self.forget(opk)
            item = await self._backend.get(opk, keys.LOCK)
            if item is None:
                return Handover([], None)
            lock = decode_lock(item.value)
            if lock.holder != holder:
                return Handover([], None)
        assert item is not None
        if lock.head >= lock.tail:
            lock.holder = None
            return Handover([Put(opk, keys.LOCK, rec.encode(lock), expect=item.version)], None)
        q = await self._backend.get(opk, keys.inbox(lock.head))
        if q is None:
            return None
        next_id = q.value.decode()
        meta = await self._backend.get(keys.inv(next_id), keys.META)
        if meta is None:
            return None
        nxt = decode_invocation(meta.value)
        if nxt.status != rec.Status.INBOXED:
            return None
        entries = await self._inboxed_journal(nxt)
        if entries is None:
            return None
        lock.holder = next_id
        lock.head += 1
        nxt.status, due, claimed = self._leases.initial(nxt, self._clock.now_ms())
        ops: list[WriteOp] = [
            Put(opk, keys.LOCK, rec.encode(lock), expect=item.version),
            Delete(opk, q.sk, expect=q.version),
            Put(meta.pk, keys.META, rec.encode(nxt), expect=meta.version, due_ms=due),
        ]
        if not claimed:
            return Handover(ops, next_id)
        return Handover(ops, Claimed(nxt, meta.version + 1, entries))

    def start_next(self, handover: Handover) -> None:
        """After the commit that carried ``handover``: drive the new holder."""
        self.wrote_ops(handover.ops)
        if isinstance(handover.next, Claimed):
            self._dispatch.dispatch(handover.next.inv.id, handover.next)
        elif handover.next is not None:
            self._dispatch.dispatch(handover.next)

    async def release(self, service: str, key: str, holder: str | None) -> None:
        """Pass the lock of ``service/key`` from ``holder`` on (the ``release`` effect).

        Idempotent: nothing happens unless ``holder`` still holds the lock. Queued invocations
        that completed while waiting (cancelled or killed) are skipped.
        """
        opk = keys.obj(service, key)
        async with self.mutex(service, key):
            self.forget(opk)  # this path reads and writes the record without the cache
            try:
                await self._release(opk, holder)
            finally:
                self.forget(opk)

    async def _release(self, opk: str, holder: str | None) -> None:
        for _ in range(1000):
            item = await self._backend.get(opk, keys.LOCK)
            if item is None:
                return
            lock = decode_lock(item.value)
            if lock.holder != holder:
                return
            ops: list[WriteOp] = []
            nxt: rec.Invocation | None = None
            meta: Item | None = None
            claimed = False
            if lock.head >= lock.tail:
                lock.holder = None
            else:
                q = await self._backend.get(opk, keys.inbox(lock.head))
                lock.head += 1
                if q is not None:
                    ops.append(Delete(opk, q.sk, expect=q.version))
                    meta = await self._backend.get(keys.inv(q.value.decode()), keys.META)
                nxt = decode_invocation(meta.value) if meta is not None else None
                if meta is not None and nxt is not None and nxt.status == rec.Status.INBOXED:
                    lock.holder = nxt.id
                    nxt.status, due, claimed = self._leases.initial(nxt, self._clock.now_ms())
                    ops.append(
                        Put(meta.pk, keys.META, rec.encode(nxt), expect=meta.version, due_ms=due)
                    )
                else:
                    # The queued invocation completed while it waited (cancelled or killed):
                    # skip it. ``holder`` keeps the lock meanwhile, so a crash here leaves a
                    # record this same release (retried from the outbox) continues from.
                    nxt = None
            ops.insert(0, Put(opk, keys.LOCK, rec.encode(lock), expect=item.version))
            try:
                await self._committer.write(ops)
            except ConflictError:
                continue
            if nxt is None:
                if lock.holder is None:
                    return
                continue
            assert meta is not None
            if claimed:
                entries = await self._inboxed_journal(nxt)
                self._dispatch.dispatch(nxt.id, Claimed(nxt, meta.version + 1, entries or []))
            else:
                self._dispatch.dispatch(nxt.id)
            return
        raise ConflictError(f"too much contention releasing {opk}")
