"""Claiming an invocation: taking its lease and bringing what arrived into its journal.

A claim reads the invocation's partition, appends its pending notifications and the sleeps that
fell due to the journal, and (if it can run) makes it RUNNING under this engine's lease, all in
one commit fenced by the record's version. An invocation that cannot run yet (suspended on
something else) still gets what arrived appended, so nothing stays pending with a due time.
"""

from __future__ import annotations

import enum
import logging

from backends.api import Check, ConflictError, Delete, Item, Put, WriteOp
from invoker import journal, keys
from invoker import records as rec
from invoker.commit import Committer
from invoker.journal import Loaded, Pending, satisfied, take_pending
from invoker.locks import ObjectLocks
from invoker.policies import Leases
from invoker.ports import Claimed
from invoker.store import Store
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.claims")


class Retry(enum.Enum):
    """The invocation changed while it was being claimed: read it again."""

    AGAIN = "again"


class Claims:
    """Takes invocations for this engine."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        leases: Leases,
        locks: ObjectLocks,
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._leases = leases
        self._locks = locks

    async def claim(self, inv_id: str) -> Claimed | Retry | None:
        """Claim ``inv_id`` if it can run now (None: it cannot, or someone else runs it)."""
        loaded, items = await self._store.partition(inv_id)
        if loaded is None:
            await self._drop_notes(inv_id, items, None)
            return None
        inv = loaded.invocation
        now = self._clock.now_ms()
        status = inv.status
        if status == rec.Status.COMPLETED:
            await self._drop_notes(inv_id, items, loaded.version)
            return None
        due_now = status == rec.Status.SCHEDULED and (inv.scheduled_ms or 0) <= now
        if due_now and inv.key and inv.handler_kind == "exclusive":
            # A delayed call to an exclusive handler: now it queues for the key's lock.
            await self._locks.enqueue(inv, [], loaded.entries, meta_version=loaded.version)
            return None
        waiting = (
            status in (rec.Status.INBOXED, rec.Status.PAUSED)
            or (status == rec.Status.SCHEDULED and (inv.scheduled_ms or 0) > now)
            or (status == rec.Status.BACKING_OFF and (inv.next_retry_ms or 0) > now)
        )
        held = (
            status == rec.Status.RUNNING
            and inv.lease_owner != self._leases.node_id
            and (inv.lease_until_ms or 0) > now
        )
        if waiting or held:
            await self._defer_notes(loaded, now, held)
            return None
        new = _absorb(loaded, now)
        if status == rec.Status.SUSPENDED and not satisfied(
            inv, new.completions, new.signals, new.named
        ):
            if not new.changed:
                return None
            due: int | None = rec.due_of(inv)
            ops: list[WriteOp] = [
                Put(
                    keys.inv(inv_id), keys.META, rec.encode(inv), expect=loaded.version, due_ms=due
                ),
                *new.ops,
            ]
            try:
                await self._committer.write(ops)
            except ConflictError:
                return Retry.AGAIN
            return None
        lease_end = self._leases.take(inv, now)
        ops = [
            Put(
                keys.inv(inv_id),
                keys.META,
                rec.encode(inv),
                expect=loaded.version,
                due_ms=lease_end,
            ),
            *new.ops,
        ]
        try:
            await self._committer.write(ops)
        except ConflictError:
            return Retry.AGAIN
        return Claimed(inv, loaded.version + 1, loaded.entries)

    async def _drop_notes(self, inv_id: str, items: list[Item], version: int | None) -> None:
        """Delete notifications that reached an invocation that completed (or was purged):
        nothing will ever take them, and left due they would bring the sweeper back to them on
        every pass. They arrive there when a delivery is applied again after a crash (its
        outbox item outlived the effect) or when a call's result outlives a killed caller."""
        notes = [i for i in items if i.sk.startswith(keys.NOTIFY_PREFIX)]
        if not notes:
            return
        pk = keys.inv(inv_id)
        ops: list[WriteOp] = [Check(pk, keys.META, expect=version or 0)]
        ops += [Delete(i.pk, i.sk, expect=i.version) for i in notes]
        try:
            await self._committer.write(ops)
        except ConflictError:
            return  # changed meanwhile: the next look sees the new state
        log.info("invocation %s is over: dropped %d notification(s)", inv_id, len(notes))

    async def _defer_notes(self, loaded: Loaded, now: int, held: bool) -> None:
        """The invocation cannot run now: push due notifications to when it might (the lease
        end of the attempt in flight), or make them undue (its next claim takes them)."""
        inv = loaded.invocation
        due = inv.lease_until_ms if held else None
        stale = [
            item for item, _note in loaded.pending if item.due_ms is not None and item.due_ms <= now
        ]
        if not stale:
            return None
        pk = keys.inv(inv.id)
        ops: list[WriteOp] = [Check(pk, keys.META, expect=loaded.version)]
        ops += [Put(i.pk, i.sk, i.value, expect=i.version, due_ms=due) for i in stale]
        try:
            await self._committer.write(ops)
        except ConflictError:
            pass  # changed meanwhile: they stay due and get looked at again
        return None


def _absorb(loaded: Loaded, now: int) -> Pending:
    """Append pending notifications and due sleeps to ``loaded`` (journal and record), and
    return the writes that store them."""
    inv = loaded.invocation
    out = take_pending(loaded, now)
    if out.entries:
        out.ops += journal.append(inv, out.entries)
        loaded.entries.extend(out.entries)
    return out
