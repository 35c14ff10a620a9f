"""Handing an invocation's result to the invocations that wait for it.

Two kinds of waiters: the *caller* of a call (named in the invocation's record) and *attached*
invocations (``w/{waiter}/{completion id}`` items in the target's partition, written by an
``AttachInvocation`` command or by an idempotent call that found its target already running).

Delivery is the ``notify`` outbox effect of the commit that completed the target whenever a
waiter was known then (the caller always is). A waiter that attaches while an attempt of the
target is in flight may be unknown to that attempt's commit, so its ``w/`` item is due soon and
re-checked with backoff (a second after attaching, then after twice the time waited, at most a
minute) for as long as the target runs; once the target is not running, its next claim sees the
waiter: the waiter sets ``has_waiters`` on its record, and every commit that completes an
invocation so flagged carries a ``notify`` effect.
"""

from __future__ import annotations

import logging

from backends.api import Check, ConflictError, Item, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.commit import Committer
from invoker.delivery import Delivery
from invoker.store import Store
from restate_lambda.clock import Clock
from restate_lambda.protocol.messages import MessageType as T

log = logging.getLogger("restate_lambda.results")

#: First re-check of a waiter on a running target, doubled each time up to the cap.
_RECHECK_FIRST_MS = 1_000
_RECHECK_CAP_MS = 60_000


def _parse_waiter(sk: str) -> tuple[str, int]:
    body = sk[len(keys.WAITER_PREFIX) :]
    waiter_id, _, cid = body.rpartition("/")
    return waiter_id, int(cid)


def _waiter_value(item: Item) -> tuple[int, int]:
    """(completion message type, when the waiter attached)."""
    msg_type, since = rec.decode(item.value, tuple[int, int])
    return msg_type, since


class Results:
    """Delivers completed invocations' results to their callers and attached invocations."""

    def __init__(
        self, store: Store, committer: Committer, clock: Clock, delivery: Delivery
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._delivery = delivery

    async def notify(self, inv_id: str) -> None:
        """The ``notify`` effect: ``inv_id`` completed; deliver its result to every waiter."""
        found = await self._store.invocation(inv_id)
        if found is None or found.inv.status != rec.Status.COMPLETED:
            return
        inv = found.inv
        if inv.caller is not None:
            await self._delivery.completion(
                inv.caller.invocation_id,
                int(T.CALL_COMPLETION_NOTIFICATION),
                inv.caller.completion_id,
                inv.result,
            )
        for item in await self._store.backend.query(keys.inv(inv_id), keys.WAITER_PREFIX):
            await self._deliver_to_waiter(inv, item)

    async def _deliver_to_waiter(self, inv: rec.Invocation, item: Item) -> None:
        waiter_id, cid = _parse_waiter(item.sk)
        msg_type, _since = _waiter_value(item)
        await self._delivery.completion(waiter_id, msg_type, cid, inv.result)
        if item.due_ms is not None:
            # Delivered: the item needs no more looking at (it goes with the purge).
            try:
                await self._committer.write(
                    [Put(item.pk, item.sk, item.value, expect=item.version)]
                )
            except ConflictError:
                pass

    async def recheck_waiter(self, item: Item) -> None:
        """A ``w/`` item fell due (its target was running when it was written)."""
        inv_id = item.pk[len(keys.INV_PREFIX) :]
        found = await self._store.invocation(inv_id)
        if found is None:
            waiter_id, cid = _parse_waiter(item.sk)
            msg_type, _since = _waiter_value(item)
            await self._delivery.completion(
                waiter_id,
                msg_type,
                cid,
                rec.Result(failure=rec.Failure(404, f"invocation {inv_id} not found")),
            )
            await self._committer.delete_garbage([(item.pk, item.sk)])
            return
        inv = found.inv
        if inv.status == rec.Status.COMPLETED:
            await self._deliver_to_waiter(inv, item)
            return
        if inv.status == rec.Status.RUNNING:
            # Still in flight: look again after twice the time waited so far (capped).
            now = self._clock.now_ms()
            _msg_type, since = _waiter_value(item)
            due = now + min(max(now - since, _RECHECK_FIRST_MS), _RECHECK_CAP_MS)
            try:
                await self._committer.write(
                    [Put(item.pk, item.sk, item.value, expect=item.version, due_ms=due)]
                )
            except ConflictError:
                pass
            return
        # Not running: flag the record, so that whatever completes it notifies the waiters.
        try:
            await self._flag(
                inv, found.version, [Put(item.pk, item.sk, item.value, expect=item.version)]
            )
        except ConflictError:
            pass  # changed meanwhile: the item is still due and gets looked at again

    async def _flag(self, inv: rec.Invocation, version: int, ops: list[WriteOp]) -> None:
        """Commit ``ops`` with ``inv`` flagged as having waiters (no write of the record if it
        already is: a check then pins its version)."""
        fence: WriteOp
        if inv.has_waiters:
            fence = Check(keys.inv(inv.id), keys.META, expect=version)
        else:
            inv.has_waiters = True
            fence = Put(
                keys.inv(inv.id), keys.META, rec.encode(inv), expect=version, due_ms=rec.due_of(inv)
            )
        await self._committer.write([fence, *ops])

    async def attach(self, target: str, waiter: str, completion_id: int, msg_type: int) -> None:
        """Have ``target`` deliver its result to ``waiter`` (now, if it already completed)."""
        pk = keys.inv(target)
        for _ in range(50):
            found = await self._store.invocation(target)
            if found is None:
                await self._delivery.completion(
                    waiter,
                    msg_type,
                    completion_id,
                    rec.Result(failure=rec.Failure(404, f"invocation {target} not found")),
                )
                return
            if found.inv.status == rec.Status.COMPLETED:
                await self._delivery.completion(waiter, msg_type, completion_id, found.inv.result)
                return  # no waiter item: it would outlive a record that expires in the store
            now = self._clock.now_ms()
            value = rec.encode((msg_type, now))
            try:
                if found.inv.status == rec.Status.RUNNING:
                    # The attempt in flight may complete without knowing of this waiter (its
                    # record must not change under it): the item is re-checked until then.
                    await self._committer.write(
                        [
                            Check(pk, keys.META, expect=found.version),
                            Put(
                                pk,
                                keys.waiter(waiter, completion_id),
                                value,
                                due_ms=now + _RECHECK_FIRST_MS,
                            ),
                        ]
                    )
                else:
                    await self._flag(
                        found.inv,
                        found.version,
                        [Put(pk, keys.waiter(waiter, completion_id), value)],
                    )
            except ConflictError as exc:
                if exc.index == 1:
                    return  # registered before
                continue
            return
        raise ConflictError(f"too much contention attaching to {target}")

    async def output(self, target: str, waiter: str, completion_id: int) -> None:
        """Deliver ``target``'s result now, or void if it has not completed."""
        found = await self._store.invocation(target)
        result: rec.Result | None = None
        if found is not None and found.inv.status == rec.Status.COMPLETED:
            result = found.inv.result
        await self._delivery.completion(
            waiter, int(T.GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION), completion_id, result
        )
