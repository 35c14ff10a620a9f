"""Managing invocations from outside: awakeables, cancel, kill, pause, resume, purge.

Ending an invocation from outside (kill; cancel before it started) is one commit of its record
carrying an outbox item with everything that must follow: pass its key's lock on, tell its
caller and attached invocations, kill the calls it made. Nothing runs between the commit and
those effects that could leave the key locked or a caller waiting.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Literal

from backends.api import ConflictError, Delete, Item, Put, WriteOp
from invoker import keys, tracing
from invoker import records as rec
from invoker.api import BadRequestError, ConflictingRequestError, EngineError, NotFoundError
from invoker.commit import Committer
from invoker.delivery import Delivery
from invoker.ids import awakeable_target, parse_invocation_id
from invoker.outbox import Outbox
from invoker.outcomes import LocalWaiters
from invoker.policies import Policies
from invoker.ports import Dispatch
from invoker.store import Store, Versioned
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.lifecycle")

CANCELLED = rec.Failure(409, "cancelled")
KILLED = rec.Failure(409, "killed")
_NOT_STARTED = (rec.Status.INBOXED, rec.Status.SCHEDULED)
#: Signal indexes below this are built-ins (1 = cancel); awakeables use the rest.
FIRST_AWAKEABLE_SIGNAL = 17

Action = Literal["cancel", "kill", "purge", "purge-journal", "pause", "resume"]


class Lifecycle:
    """Admin operations on invocations."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        policies: Policies,
        delivery: Delivery,
        outbox: Outbox,
        waiters: LocalWaiters,
        dispatch: Dispatch,
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._policies = policies
        self._delivery = delivery
        self._outbox = outbox
        self._waiters = waiters
        self._dispatch = dispatch

    async def complete_awakeable(self, awakeable_id: str, result: rec.Result) -> None:
        """Resolve or reject an awakeable from outside.

        Like Restate, accepted even when the invocation is unknown or completed. Unlike Restate,
        an id naming a built-in signal (cancel is 1) is refused: invocation ids are public
        derivations, so accepting it would let any ingress client cancel any invocation.
        """
        try:
            target, idx = awakeable_target(awakeable_id)
        except ValueError as exc:
            raise BadRequestError(f"invalid awakeable id {awakeable_id!r}: {exc}") from exc
        if idx < FIRST_AWAKEABLE_SIGNAL:
            raise BadRequestError(
                f"invalid awakeable id {awakeable_id!r}: it names built-in signal {idx}, "
                "not an awakeable"
            )
        await self._delivery.signal(target, idx, None, result)

    async def _get(self, invocation_id: str) -> Versioned:
        try:
            parse_invocation_id(invocation_id)
        except ValueError as exc:
            raise BadRequestError(
                "The request field 'invocation_id' is invalid. Reason: bad format"
            ) from exc
        found = await self._store.invocation(invocation_id)
        if found is None:
            raise NotFoundError(f"The requested invocation '{invocation_id}' does not exist")
        return found

    async def manage(
        self, invocation_id: str, action: Action, *, deployment: str | None = None
    ) -> bool:
        """Apply one admin lifecycle operation (``deployment``: resume on another one).

        True when it was only accepted: a pause of an invocation whose attempt is running takes
        effect as that attempt ends (restate-server answers 202 then, 200 otherwise)."""
        for _ in range(50):
            found = await self._get(invocation_id)
            try:
                if action == "cancel":
                    await self._cancel(found)
                elif action == "kill":
                    await self.terminate(found, KILLED, recursive=True)
                elif action == "purge":
                    await self._purge(found.inv)
                elif action == "purge-journal":
                    await self.purge_journal(found)
                elif action == "pause":
                    return await self._pause(found)
                elif action == "resume":
                    await self._resume(found, deployment)
                else:
                    raise BadRequestError(f"unknown action {action}")
                return False
            except ConflictError:
                continue
        raise ConflictingRequestError(f"invocation {invocation_id} is changing too fast; retry")

    async def kill(self, invocation_id: str) -> None:
        """Kill an invocation if it has not completed (the ``kill_children`` effect)."""
        try:
            await self.manage(invocation_id, "kill")
        except (NotFoundError, ConflictingRequestError, BadRequestError):
            pass

    async def _cancel(self, found: Versioned) -> None:
        inv = found.inv
        if inv.status == rec.Status.COMPLETED:
            raise _already_completed(inv)
        if inv.status in _NOT_STARTED:
            await self.terminate(found, CANCELLED, recursive=False)
            return
        await self._delivery.signal(inv.id, 1, None, None)

    async def terminate(self, found: Versioned, failure: rec.Failure, *, recursive: bool) -> None:
        """Complete an invocation with ``failure`` without running it any further."""
        inv = found.inv
        if inv.status == rec.Status.COMPLETED:
            raise _already_completed(inv)
        holds_lock = (
            inv.key is not None
            and inv.handler_kind == "exclusive"
            and inv.status not in _NOT_STARTED
        )
        running = inv.status == rec.Status.RUNNING
        now = self._clock.now_ms()
        self._policies.mark_completed(inv, rec.Result(failure=failure), now)
        effects = [rec.Effect("notify")]
        if holds_lock:
            assert inv.key is not None
            effects.append(
                rec.Effect("release", rec.encode(rec.ReleaseOp(inv.service, inv.key, inv.id)))
            )
        if recursive:
            effects.append(rec.Effect("kill_children"))
        pk = keys.inv(inv.id)
        outbox = self._outbox.item(inv.id, found.version + 1, effects)
        await self._committer.write(
            [
                Put(pk, keys.META, rec.encode(inv), expect=found.version, due_ms=rec.due_of(inv)),
                outbox,
            ]
        )
        self._waiters.resolve(inv)
        if (tracer := tracing.current()) is not None:
            tracer.invocation_ended(inv)
        self._outbox.apply_soon(self._outbox.committed(outbox))
        if running:
            self._dispatch.dispatch(inv.id)  # a streaming attempt here ends at once (see _pause)

    async def _pause(self, found: Versioned) -> bool:
        """Park the invocation as paused; True if an attempt was running (its commit will fail
        its fence, so what it did after its last commit runs again on resume)."""
        inv = found.inv
        if inv.status == rec.Status.COMPLETED:
            raise ConflictingRequestError(
                f"The invocation '{inv.id}' is not running, cannot be paused."
            )
        if inv.status == rec.Status.PAUSED:
            return False
        running = inv.status == rec.Status.RUNNING
        inv.status = rec.Status.PAUSED
        inv.paused_by_user = True
        inv.lease_owner = None
        inv.lease_until_ms = None
        inv.modified_ms = self._clock.now_ms()
        await self._committer.write(
            [Put(keys.inv(inv.id), keys.META, rec.encode(inv), expect=found.version)]
        )
        if running:
            # An attempt of this engine that streams (HTTP/2) ends at once instead of holding
            # the invocation until its handler's inactivity timeout; elsewhere, its next
            # commit fails its fence.
            self._dispatch.dispatch(inv.id)
        return running

    async def _resume(self, found: Versioned, deployment: str | None = None) -> None:
        """Resume an invocation, as restate-server 1.7 does: a paused or suspended one is
        invoked again (a suspended one replays and suspends again if nothing it awaits has
        arrived), a backing-off one retries at once, a running one is left alone (200); 409
        once completed, 425 while inboxed or scheduled. ``deployment`` (another deployment,
        or ``latest``) only for a paused or suspended invocation already pinned to one (409)."""
        inv = found.inv
        if inv.status == rec.Status.COMPLETED:
            raise ConflictingRequestError(
                f"The invocation '{inv.id}' is completed, cannot be resumed."
            )
        if inv.status in (rec.Status.INBOXED, rec.Status.SCHEDULED):
            raise EngineError(
                f"The invocation '{inv.id}' is either inboxed or scheduled, cannot be resumed.",
                status=425,
            )
        resumable = (rec.Status.PAUSED, rec.Status.SUSPENDED)
        if deployment is not None and (inv.status not in resumable or not inv.deployment_id):
            raise ConflictingRequestError(
                f"The invocation '{inv.id}' is still running or the deployment id is not pinned "
                "yet, deployment id cannot be changed."
            )
        if inv.status not in (*resumable, rec.Status.BACKING_OFF):
            return
        if deployment is not None:
            inv.deployment_id = None if deployment == "latest" else deployment
            inv.protocol_version = None
        now = self._clock.now_ms()
        inv.status = rec.Status.READY
        inv.paused_by_user = False
        inv.retry_count = 0
        inv.modified_ms = now
        await self._committer.write(
            [Put(keys.inv(inv.id), keys.META, rec.encode(inv), expect=found.version, due_ms=now)]
        )
        self._dispatch.dispatch(inv.id)

    async def purge_journal(self, found: Versioned) -> None:
        """Delete a completed invocation's journal, keeping its record and output (Restate's
        ``purge-journal``; idempotent). The record goes first (``journal_len`` 0 marks the
        journal gone, and the record is due next at its own expiry), the segments are then
        garbage: a crash in between leaves garbage that the next purge-journal or the final
        purge deletes."""
        inv = found.inv
        if inv.status != rec.Status.COMPLETED:
            raise ConflictingRequestError(f"The invocation '{inv.id}' is not yet completed.")
        if inv.journal_len or inv.commands_len or inv.journal_expires_ms is not None:
            inv.journal_len = 0
            inv.commands_len = 0
            inv.tail = []
            inv.journal_expires_ms = None
            inv.modified_ms = self._clock.now_ms()
            await self._committer.write(
                [
                    Put(
                        keys.inv(inv.id),
                        keys.META,
                        rec.encode(inv),
                        expect=found.version,
                        due_ms=inv.expires_ms,
                    )
                ]
            )
        items = await self._store.backend.query(keys.inv(inv.id), keys.JOURNAL_PREFIX)
        await self._committer.delete_garbage([(i.pk, i.sk) for i in items])

    async def _purge(self, inv: rec.Invocation) -> None:
        if inv.status != rec.Status.COMPLETED:
            raise ConflictingRequestError(f"The invocation '{inv.id}' is not yet completed.")
        items = await self._store.backend.query(keys.inv(inv.id))
        if not await self.purge_items(inv, items):
            raise ConflictingRequestError(
                f"The invocation '{inv.id}' still has effects to apply; retry later."
            )

    async def purge_items(self, inv: rec.Invocation, items: list[Item]) -> bool:
        """Delete a completed invocation's records (and a finished workflow's state and
        promises). False, and nothing deleted, while outbox items of it are pending.

        The record goes first, with a condition on its version: that fences the id off (a
        concurrent purge loses here, and a new invocation with the same derived id cannot be
        created while the old journal is still there, since creation is create-if-absent). What
        is left is garbage, deleted without conditions in bulk. A crash in between leaves
        unreachable garbage, never a corrupt invocation.
        """
        if any(i.sk.startswith(keys.OUTBOX_PREFIX) for i in items):
            return False
        meta = next((i for i in items if i.sk == keys.META), None)
        if meta is not None:
            ops: list[WriteOp] = [Delete(meta.pk, meta.sk, expect=meta.version)]
            await self._committer.write(ops)
        await self._committer.delete_garbage([(i.pk, i.sk) for i in items if i.sk != keys.META])
        if inv.handler_kind == "workflow" and inv.key is not None:
            opk = keys.obj(inv.service, inv.key)
            obj_items = await self._store.backend.query(opk)
            await self._committer.delete_garbage([(i.pk, i.sk) for i in obj_items])
        return True

    async def purge_if_expired(self, inv_id: str) -> None:
        """Purge ``inv_id`` if it completed and its retention has ended (the sweeper's job);
        only its journal if just the journal's retention has ended. Both wait while effects
        of it are pending (killing its children reads its journal)."""
        loaded, items = await self._store.partition(inv_id)
        if loaded is None:
            return
        inv = loaded.invocation
        now = self._clock.now_ms()
        if inv.status != rec.Status.COMPLETED or inv.expires_ms is None:
            return
        if inv.expires_ms > now:
            if inv.journal_expires_ms is None or inv.journal_expires_ms > now:
                return
            if not loaded.outbox:
                # One fenced write drops the journal and makes the record due at its expiry; a
                # conflict means it changed meanwhile, and its new write set its due.
                with contextlib.suppress(ConflictError):
                    await self.purge_journal(Versioned(inv, loaded.version))
                return
        elif await self.purge_items(inv, items):
            return
        # Effects still pending: look again after they had time to apply.
        meta = next(i for i in items if i.sk == keys.META)
        with contextlib.suppress(ConflictError):
            await self._committer.write(
                [Put(meta.pk, meta.sk, meta.value, expect=meta.version, due_ms=now + 60_000)]
            )


def _already_completed(inv: rec.Invocation) -> ConflictingRequestError:
    return ConflictingRequestError(f"The invocation '{inv.id}' was already completed.")
