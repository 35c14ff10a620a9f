"""Settling an attempt: turning what it produced into one commit, and what follows.

Every outcome of an attempt is one atomic batch, built here, fenced by the invocation record's
version (operation 0):

* **progress** (journal segment, state, sleeps, outbox item with the attempt's effects) always;
* **completed**: the record with its result, the key's lock handed on in the same batch when
  possible, and a ``notify`` effect when a caller or attached invocation waits;
* **suspended**: the record waiting, due at its earliest sleep;
* **continue**: everything the handler waits for is already there; the lease is extended and the
  next attempt starts in the same process;
* **failed**: the record backing off (or paused, or completed with the failure when the retry
  policy says kill), with whatever progress the attempt made before its error.

After a batch applied, nothing can turn it into a failure: the follow-up (applying the outbox,
driving the next holder of the lock, waking local clients) runs in :meth:`Settler._after`, whose
errors are logged and left to the durable outbox and due records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from backends.api import ConflictError, Put, ValueTooLargeError, WriteOp
from invoker import journal, keys, tracing
from invoker import records as rec
from invoker.commit import Committer, CommitTooLargeError, CommitUnknownError
from invoker.config import EngineConfig
from invoker.hopeless import never_succeeds
from invoker.journal import Pending, resolved_of, satisfied
from invoker.locks import Handover, ObjectLocks
from invoker.outbox import Outbox
from invoker.outcomes import LocalWaiters, unavailable
from invoker.policies import Leases, Policies
from invoker.ports import Claimed, Dispatch
from invoker.processing import AttemptError, Entry, Processed, notification_entry
from invoker.store import Store
from restate_lambda.clock import Clock
from restate_lambda.protocol.messages import MessageType as T

log = logging.getLogger("restate_lambda.settle")

#: Hand-over tries before a completion falls back to a ``release`` effect.
_HANDOVER_TRIES = 5


class _LockMoved(Exception):
    """The hand-over of a key's lock lost to another writer of the lock record."""


@dataclass(slots=True)
class Continue:
    """The handler can go on at once: run the next attempt with this state."""

    state: dict[str, bytes]
    state_version: int


@dataclass(slots=True)
class _Batch:
    """A commit being built."""

    ops: list[WriteOp] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    effects: list[rec.Effect] = field(default_factory=list)
    state_version: int = 0


class Settler:
    """Commits attempts (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        config: EngineConfig,
        policies: Policies,
        leases: Leases,
        locks: ObjectLocks,
        outbox: Outbox,
        waiters: LocalWaiters,
        dispatch: Dispatch,
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._config = config
        self._policies = policies
        self._leases = leases
        self._locks = locks
        self._outbox = outbox
        self._waiters = waiters
        self._dispatch = dispatch

    # -- the attempt's outcome -----------------------------------------------------------------

    async def settle(self, st: Claimed, p: Processed, state_version: int) -> Continue | None:
        """Commit one attempt's outcome; :class:`Continue` when the handler can go on."""
        assert not st.done, "an attempt of a completed invocation"
        inv = st.inv
        now = self._clock.now_ms()
        batch = self._progress(st, p, state_version, now)
        if p.error is not None:
            await self.fail(st, p.error, batch)
            return None
        if p.ended:
            assert p.output is not None
            await self._end(st, p.output, batch)
            return None
        assert p.suspension is not None
        completions, signals, named = p.suspension
        inv.waiting_completions = completions
        inv.waiting_signals = signals
        inv.waiting_named_signals = named
        inv.retry_count = 0
        resolved = p.resolved_completions | _fire_sleeps(inv, batch, now)
        if inv.checkpoint is not None:
            # This attempt checkpointed: it may suspend on completions already journaled (a
            # voluntary suspension before a deadline waits on the runs it completed). They
            # count, so it resumes at once instead of waiting forever.
            resolved |= resolved_of(st.entries).completions
        cont = satisfied(inv, resolved, set())
        due: int | None
        if cont:
            due = self._leases.take(inv, now)
        else:
            inv.status = rec.Status.SUSPENDED
            inv.lease_owner = None
            inv.lease_until_ms = None
            due = rec.due_of(inv)
        if not await self._commit(st, batch, due):
            return None
        if cont:
            return Continue(p.state or {}, batch.state_version)
        # Notifications that arrived while the attempt ran: the claim takes them in.
        self._dispatch.dispatch(inv.id)
        return None

    def _progress(self, st: Claimed, p: Processed, state_version: int, now: int) -> _Batch:
        """Journal, state, sleeps and effects of an attempt (applied to ``st.inv``)."""
        inv = st.inv
        batch = _Batch(entries=list(p.entries), effects=list(p.effects))
        batch.state_version = state_version
        if p.entries:
            inv.commands_len += p.new_commands
            inv.last_stored_ms = now
            inv.retry_since_stored = 0
        if p.state_changed and inv.key is not None and p.state is not None:
            batch.ops.append(
                Put(
                    keys.obj(inv.service, inv.key),
                    keys.STATE,
                    rec.encode(rec.StateRecord(p.state)),
                    expect=state_version,
                )
            )
            batch.state_version = state_version + 1
        if p.timers:
            inv.timers = [*inv.timers, *p.timers]
        inv.modified_ms = now
        return batch

    async def _end(self, st: Claimed, result: rec.Result, batch: _Batch) -> None:
        """Commit the invocation's completion with ``result`` (and ``batch``'s progress)."""
        inv = st.inv
        now = self._clock.now_ms()
        self._policies.mark_completed(inv, result, now)
        inv.retry_count = 0
        if inv.caller is not None or inv.has_waiters:
            batch.effects.append(rec.Effect("notify"))
        # A store with item expiry (DynamoDB TTL) drops the record at retention's end for free
        # when the record is all the invocation left in its partition (see ``_commit``);
        # otherwise the sweeper purges it then (its journal first, at the journal's own expiry,
        # when that is earlier; a finished workflow's state and promises with it).
        expiry = (
            inv.expires_ms
            if self._committer.backend.supports_expiry
            and inv.journal_expires_ms is None
            and inv.handler_kind != "workflow"
            else None
        )
        due = rec.due_of(inv)
        holds_lock = inv.key is not None and inv.handler_kind == "exclusive"
        if st.unsaved is not None and st.deferred_lock is not None:
            holds_lock = False  # never stored as taken: the creation checks it is still free
        if not holds_lock:
            await self._commit(st, batch, due, expiry=expiry)
            return
        assert inv.key is not None
        async with self._locks.mutex(inv.service, inv.key):
            for _ in range(_HANDOVER_TRIES):
                handover = await self._locks.handover(inv.service, inv.key, inv.id)
                if handover is None:
                    break
                try:
                    await self._commit(st, batch, due, handover=handover, expiry=expiry)
                    return
                except _LockMoved:
                    # Another process queued behind the lock meanwhile: read it again.
                    self._locks.forget(keys.obj(inv.service, inv.key))
            batch.effects.append(
                rec.Effect("release", rec.encode(rec.ReleaseOp(inv.service, inv.key, inv.id)))
            )
            await self._commit(st, batch, due)

    async def checkpoint(
        self,
        st: Claimed,
        p: Processed,
        state_version: int,
        arrived: Pending,
        request_index: int,
    ) -> None:
        """Commit a checkpoint of the attempt in flight: the notifications that ``arrived``
        (they go first: the handler learns them from the reply), then ``p``'s entries, state
        and effects; the invocation stays RUNNING under the same token, its lease renewed.

        Raises:
            ConflictError: the record changed meanwhile (nothing applied).
            CommitUnknownError: storage kept failing.
        """
        inv = st.inv
        now = self._clock.now_ms()
        batch = self._progress(st, p, state_version, now)
        batch.entries = [*arrived.entries, *batch.entries]
        batch.ops += arrived.ops
        first_own = request_index + len(arrived.entries)
        inv.checkpoint = (request_index, first_own, first_own + len(p.entries))
        due = self._leases.extend(inv, now)
        if not await self._commit(st, batch, due, conflicts="raise"):
            raise ConflictError("the checkpoint cannot be stored; the invocation was ended")

    # -- failures ------------------------------------------------------------------------------

    async def fail(self, st: Claimed, error: AttemptError, batch: _Batch | None = None) -> None:
        """Record a failed attempt: back off and retry, or pause / kill after max attempts.

        ``batch``: progress the attempt made before failing, committed with the failure.
        """
        if st.done:
            log.error("invocation %s completed; not recording a failure after it", st.inv.id)
            return
        inv = st.inv
        batch = batch or _Batch()
        now = self._clock.now_ms()
        inv.retry_count += 1
        inv.retry_since_stored = 1 if batch.entries else inv.retry_since_stored + 1
        inv.last_failure = rec.Failure(error.code, error.message)
        inv.last_failure_related_command = error.related_command
        inv.last_failure_stacktrace = error.stacktrace or None
        inv.lease_owner = None
        inv.lease_until_ms = None
        inv.modified_ms = now
        policy = self._policies.retry_policy(inv)
        log.warning(
            "invocation %s %s/%s attempt failed (%d): [%d] %s",
            inv.id,
            inv.service,
            inv.handler,
            inv.retry_count,
            error.code,
            error.message,
            extra={"invocation_id": inv.id, "stacktrace": error.stacktrace or None},
        )
        due: int | None
        hopeless = never_succeeds(
            f"{inv.service}/{inv.handler}", error.message, error.stacktrace, error.related_command
        )
        if hopeless is not None:
            log.error(
                "%s. Retrying cannot fix this: paused invocation %s; fix the handler, then "
                "resume it (restate-lambda invocations resume %s)",
                hopeless,
                inv.id,
                inv.id,
                extra={"invocation_id": inv.id},
            )
            inv.status = rec.Status.PAUSED
            inv.next_retry_ms = None
            due = None
        elif policy.max_attempts is not None and inv.retry_count >= policy.max_attempts:
            if policy.on_max_attempts == "kill":
                await self._end(
                    st, rec.Result(failure=rec.Failure(error.code, error.message)), batch
                )
                return
            inv.status = rec.Status.PAUSED
            inv.next_retry_ms = None
            due = None
        else:
            if error.next_retry_delay_ms is not None:
                delay = error.next_retry_delay_ms
            else:
                delay = int(
                    min(
                        policy.initial_interval_ms * policy.factor ** (inv.retry_count - 1),
                        policy.max_interval_ms,
                    )
                )
            inv.status = rec.Status.BACKING_OFF
            inv.next_retry_ms = now + delay
            due = inv.next_retry_ms
        await self._commit(st, batch, due)

    async def terminal(self, st: Claimed, failure: rec.Failure) -> None:
        """End the invocation with ``failure`` (an attempt that can never succeed)."""
        await self._end(st, rec.Result(failure=failure), _Batch())

    # -- the commit ----------------------------------------------------------------------------

    async def _commit(
        self,
        st: Claimed,
        batch: _Batch,
        due: int | None,
        *,
        handover: Handover | None = None,
        expiry: int | None = None,
        conflicts: str = "settle",
    ) -> bool:
        """Commit ``st.inv`` with ``batch``; True when applied (then follow it up).

        A conflict on the record means the invocation changed under the attempt (killed,
        paused, taken over): the attempt is dropped and the invocation looked at again. A
        conflict elsewhere repeats on every try, so it fails the attempt with backoff.
        ``conflicts="raise"``: raise them instead (a checkpoint decides for itself).
        ``expiry`` (a completion): when this commit leaves nothing of the invocation but its
        record (no journal segment, no outbox item: conditions in ``_end``), the record gets
        no due time and expires in the store at ``expiry`` instead of being purged. Items that
        reach it later (a notification racing this commit) are due and dropped by the sweeper.
        """
        inv = st.inv
        pk = keys.inv(inv.id)
        ops: list[WriteOp] = [Put(pk, keys.META, b"", expect=st.version, due_ms=due)]
        old_len, old_tail = inv.journal_len, inv.tail
        ops += journal.append(inv, batch.entries)
        ops += batch.ops
        outbox: Put | None = None
        if batch.effects:
            outbox = self._outbox.item(inv.id, st.version + 1, batch.effects)
            ops.append(outbox)
        if handover is not None:
            ops += handover.ops
        expires_ms = None
        if expiry is not None and outbox is None and not journal.in_segments(inv):
            expires_ms, due = expiry, None
        ops[0] = Put(
            pk, keys.META, rec.encode(inv), expect=st.version, due_ms=due, expires_ms=expires_ms
        )
        try:
            completing = inv.status == rec.Status.COMPLETED
            await self._committer.write(st.creation(ops, completing=completing))
        except ConflictError as exc:
            inv.journal_len, inv.tail = old_len, old_tail
            if handover is not None and exc.index is not None:
                first = len(ops) - len(handover.ops)
                if first <= exc.index < len(ops):
                    raise _LockMoved from exc
            if conflicts == "raise":
                raise
            await self._lost(st, exc)
            return False
        except (CommitTooLargeError, ValueTooLargeError) as exc:
            inv.journal_len, inv.tail = old_len, old_tail
            log.warning("invocation %s: %s", inv.id, exc)
            await self._too_large(st, exc)
            return False
        except CommitUnknownError as exc:
            inv.journal_len, inv.tail = old_len, old_tail
            await self._unknown(st, exc)
            raise
        self._after(st, batch, handover, outbox)
        return True

    def _after(
        self, st: Claimed, batch: _Batch, handover: Handover | None, outbox: Put | None
    ) -> None:
        """Follow up an applied commit. Nothing here may fail the commit: errors are logged and
        everything it starts is also durable (outbox item due, records due)."""
        inv = st.inv
        try:
            st.version += 1
            st.saved()
            st.entries.extend(batch.entries)
            if handover is not None:
                self._locks.start_next(handover)
            if outbox is not None:
                self._outbox.apply_soon(self._outbox.committed(outbox))
            if inv.status == rec.Status.COMPLETED:
                st.done = True
                self._waiters.resolve(inv)
                if (tracer := tracing.current()) is not None:
                    tracer.invocation_ended(inv)
            elif inv.timers:
                self._dispatch.due_at(inv.id, min(wake for _cid, wake in inv.timers))
            elif inv.status in (rec.Status.BACKING_OFF,) and inv.next_retry_ms is not None:
                self._dispatch.due_at(inv.id, inv.next_retry_ms)
        except Exception:
            log.exception("following up the commit of %s failed; the sweeper will", inv.id)

    async def _lost(self, st: Claimed, exc: ConflictError) -> None:
        inv = st.inv
        if exc.index == 0:
            log.info("invocation %s changed during its attempt; dropping the attempt", inv.id)
            self._dispatch.dispatch(inv.id)
            return
        # A conflict on something the attempt wrote (its state, a journal segment, the outbox):
        # it would conflict again on every retry. Back off instead of re-invoking at once.
        found = await self._store.invocation(inv.id)
        if found is None:
            if st.unsaved is not None:
                # Its creation joined this commit and was refused (a deferred lock no longer
                # free): nothing was stored or acknowledged. The client gets an error and may
                # call again; retrying the same commit here would fail the same way.
                log.warning("invocation %s could not be created: %s", inv.id, exc)
                self._waiters.fail(inv.id, unavailable(inv.id))
            return
        st.inv, st.version = found.inv, found.version
        if found.inv.lease_owner != self._leases.node_id:
            return
        await self.fail(
            st,
            AttemptError(500, f"the attempt's commit conflicted on item {exc.index}: {exc}"),
        )

    async def _too_large(self, st: Claimed, exc: Exception) -> None:
        found = await self._store.invocation(st.inv.id)
        if found is not None:
            st.inv, st.version = found.inv, found.version
        await self.terminal(st, rec.Failure(500, f"the attempt's output cannot be stored: {exc}"))

    async def _unknown(self, st: Claimed, exc: CommitUnknownError) -> None:
        inv = st.inv
        log.error("invocation %s: storage failed, outcome unknown: %s", inv.id, exc)
        try:
            found = await self._store.invocation(inv.id)
        except Exception:
            return  # its record stays due (lease end): the sweeper resumes it from the store
        if found is None:
            if st.unsaved is not None:
                self._waiters.fail(inv.id, unavailable(inv.id))  # never stored: tell the client
        elif found.inv.status == rec.Status.COMPLETED:
            st.done = True
            self._waiters.resolve(found.inv)  # the commit did apply


def _fire_sleeps(inv: rec.Invocation, batch: _Batch, now: int) -> set[int]:
    """Complete the sleeps already due (a zero-length sleep, a slow attempt) in this commit."""
    fired = {cid for cid, wake in inv.timers if wake <= now}
    if fired:
        inv.timers = [t for t in inv.timers if t[1] > now]
        for cid in sorted(fired):
            batch.entries.append(
                notification_entry(int(T.SLEEP_COMPLETION_NOTIFICATION), cid, None)
            )
    return fired
