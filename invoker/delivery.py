"""Delivering notifications (completions and signals) to invocations, with a durable wake-up.

A notification is an item ``n/...`` in the target's partition, created if absent (the first
delivery of a completion id or signal index wins; a repeated one is a no-op). The same batch
makes sure something durable will bring the notification into the journal:

* target **suspended** and waiting for it: the batch also moves the target's record to READY,
  due now. A crash right after the commit leaves a due record the sweeper re-drives.
* target **running**: the attempt in flight may suspend without having seen the notification,
  and its engine may die right after that. The notification is due at the attempt's lease end,
  so the sweeper looks again then; normally the engine absorbs it at once after its commit.
* otherwise (ready, backing off, scheduled, queued, paused, suspended on something else): the
  target's next claim absorbs every pending notification; the batch checks the record's version
  so the status it was decided on still holds.
"""

from __future__ import annotations

import logging

from backends.api import Check, ConflictError, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.commit import Committer
from invoker.journal import satisfied
from invoker.ports import Dispatch
from invoker.processing import Entry, notification_entry, notification_ids, signal_entry
from invoker.store import Store
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.delivery")

_MAX_TRIES = 50


class Delivery:
    """Writes notifications into invocations' partitions and wakes them."""

    def __init__(
        self, store: Store, committer: Committer, clock: Clock, dispatch: Dispatch, node_id: str
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._dispatch = dispatch
        self._node_id = node_id

    async def completion(
        self, target: str, msg_type: int, completion_id: int, result: rec.Result | None
    ) -> bool:
        """Deliver a completion notification (``result`` None: void)."""
        entry = notification_entry(msg_type, completion_id, result)
        return await self.deliver(target, keys.completion_notification(completion_id), entry)

    async def signal(
        self,
        target: str,
        idx: int | None,
        name: str | None,
        result: rec.Result | None,
        *,
        unique: str = "",
    ) -> bool:
        """Deliver a signal by index, or by name (``unique`` tells repeated sends apart: a
        named signal can be sent many times; a retried delivery of one send must not double)."""
        entry = signal_entry(idx, name, result)
        if name is not None:
            sk = keys.named_signal_notification(name, unique)
        else:
            sk = keys.signal_notification(idx or 0)
        return await self.deliver(target, sk, entry)

    async def deliver(self, target: str, sk: str, entry: Entry) -> bool:
        """Store ``entry`` as a pending notification of ``target`` and wake it if it waits.

        Returns False when the target does not exist or has completed (nothing to deliver to),
        True when it is delivered (now or earlier).
        """
        pk = keys.inv(target)
        cid, sid, name = notification_ids(entry)
        for _ in range(_MAX_TRIES):
            found = await self._store.invocation(target)
            if found is None or found.inv.status == rec.Status.COMPLETED:
                return False
            inv, version = found.inv, found.version
            now = self._clock.now_ms()
            note_due: int | None = None
            wakes = inv.status == rec.Status.SUSPENDED and satisfied(
                inv,
                {cid} if cid is not None else set(),
                {sid} if sid is not None else set(),
                {name} if name is not None else None,
            )
            fence: WriteOp
            if wakes:
                inv.status = rec.Status.READY
                inv.modified_ms = now
                fence = Put(pk, keys.META, rec.encode(inv), expect=version, due_ms=now)
            else:
                if inv.status == rec.Status.RUNNING:
                    note_due = inv.lease_until_ms if inv.lease_until_ms is not None else now
                fence = Check(pk, keys.META, expect=version)
            note = rec.PendingNotification(now, entry[0], entry[1])
            try:
                await self._committer.write(
                    [fence, Put(pk, sk, rec.encode(note), expect=0, due_ms=note_due)]
                )
            except ConflictError as exc:
                if exc.index == 1:
                    return True  # delivered before (by us, or by a racing copy)
                continue  # the target changed: decide again
            if wakes or (inv.status == rec.Status.RUNNING and inv.lease_owner == self._node_id):
                self._dispatch.dispatch(target)
            return True
        log.warning("could not deliver a notification to %s: too much contention", target)
        raise ConflictError(f"too much contention delivering to {target}")
