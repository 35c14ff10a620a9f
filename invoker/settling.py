"""Committing an attempt: journal segment, state, timers, outbox and status in one batch,
with retries, pausing, and the hand-over of a virtual object's lock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from backends.api import ConflictError, Delete, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.journal import (
    decode_segment,
    encode_segment,
    satisfied,
)
from invoker.processing import (
    AttemptError,
    Processed,
)

if TYPE_CHECKING:
    pass

from invoker.engine_core import Claimed, EngineCore, _lock_decoder

log = logging.getLogger("restate_lambda.engine")


class Settling(EngineCore):
    """Commits attempts (see :meth:`_settle`)."""

    async def _settle(
        self, st: Claimed, p: Processed, state_version: int
    ) -> tuple[dict[str, bytes], int] | None:
        """Commit one attempt; return the state to continue with, or None when done."""
        inv = st.inv
        now = self.clock.now_ms()
        pk = keys.inv(inv.id)
        ops: list[WriteOp] = []
        first_new = inv.journal_len
        if p.entries:
            if not st.append_to_unsaved_journal(p.entries):
                ops.append(Put(pk, keys.journal(first_new), encode_segment(p.entries)))
            inv.journal_len += len(p.entries)
            inv.commands_len += p.new_commands
            inv.last_stored_ms = now
            inv.retry_since_stored = 0
        new_state_version = state_version
        if p.state_changed and inv.key is not None and p.state is not None:
            ops.append(
                Put(
                    keys.obj(inv.service, inv.key),
                    keys.STATE,
                    rec.encode(rec.StateRecord(p.state)),
                    expect=state_version,
                )
            )
            new_state_version = state_version + 1
        for cid, wake in p.timers:
            ops.append(Put(pk, keys.timer(cid), b"", due_ms=wake))
        effects = list(p.effects)
        completed = p.ended and p.output is not None
        releases = completed and inv.key is not None and inv.handler_kind == "exclusive"
        outbox_keys: list[str] = []
        for n, effect in enumerate(effects):
            sk = keys.outbox(first_new * 1000 + n)
            outbox_keys.append(sk)
            ops.append(Put(pk, sk, rec.encode(effect), due_ms=now + self.config.recovery_grace_ms))
        inv.modified_ms = now
        cont = False
        store_expiry: int | None = None
        if p.error is not None:
            if await self._fail_attempt(st, p.error, ops, stored=bool(p.entries)):
                st.entries.extend(p.entries)
                await self._apply_outbox(inv.id, effects, outbox_keys)
            return None
        if completed:
            assert p.output is not None
            self._mark_completed(inv, p.output, now)
            inv.output_content_type = self._output_content_type(inv, p.output.value or b"")
            inv.retry_count = 0
            # Completed in the commit that created it: everything it has is in this batch, so a
            # store with item expiry (DynamoDB TTL) can drop it at retention's end for free;
            # otherwise the sweeper purges it then.
            if self.backend.supports_expiry and st.unsaved is not None:
                store_expiry = inv.expires_ms
                due: int | None = None
            else:
                due = inv.expires_ms
        elif p.suspension is not None:
            completions, signals, named = p.suspension
            inv.waiting_completions = completions
            inv.waiting_signals = signals
            inv.waiting_named_signals = named
            inv.retry_count = 0
            if satisfied(inv, p.resolved_completions, set()):
                cont = True
                inv.lease_until_ms = now + self.config.lease_ms
                inv.attempts += 1
                inv.last_start_ms = now
                due = inv.lease_until_ms
            else:
                inv.status = rec.Status.SUSPENDED
                inv.lease_owner = None
                inv.lease_until_ms = None
                due = None
        else:  # pragma: no cover - process() guarantees a terminal message
            raise AssertionError("attempt without outcome")
        ops = st.first_write(
            Put(pk, keys.META, rec.encode(inv), expect=st.version, due_ms=due),
            ops,
            expires_ms=store_expiry,
        )
        handover: Claimed | str | None = None
        try:
            if releases:
                assert inv.key is not None
                async with self._key_lock(inv.service, inv.key):
                    handover = await self._commit_with_release(inv, ops, effects, outbox_keys)
            else:
                await self.backend.write(ops)
        except ConflictError as exc:
            log.info(
                "invocation %s changed during its attempt (%s); dropping the attempt", inv.id, exc
            )
            self._rerun.add(inv.id)
            return None
        st.version += 1
        if isinstance(handover, Claimed):
            self.dispatch(handover.inv.id, handover)
        elif handover is not None:
            self.dispatch(handover)
        st.entries.extend(p.entries)
        if p.timers:
            self._due_at(inv.id, min(wake for _cid, wake in p.timers))
        await self._apply_outbox(inv.id, effects, outbox_keys)
        if completed:
            await self._on_completed(inv)
            return None
        if cont:
            inv.waiting_completions = []
            inv.waiting_signals = []
            return (p.state or {}), new_state_version
        # Suspended: a notification may have arrived while the attempt ran.
        self.dispatch_if_pending(inv.id)
        return None

    async def _commit_with_release(
        self,
        inv: rec.Invocation,
        ops: list[WriteOp],
        effects: list[rec.Effect],
        outbox_keys: list[str],
    ) -> Claimed | str | None:
        """Commit a completed exclusive attempt and pass its key's lock on in the same batch.

        Called with the key's in-process lock held, so only another process can change the
        lock record meanwhile; then the hand-over is retried, and as a last resort left to a
        ``release`` outbox effect. Returns the next invocation, claimed, if there is one.
        """
        assert inv.key is not None
        base = len(ops)
        for _ in range(5):
            release = await self._release_ops(inv.service, inv.key, inv.id)
            if release is None:
                break
            release_ops, handover = release
            opk = keys.obj(inv.service, inv.key)
            try:
                await self.backend.write([*ops, *release_ops])
            except ConflictError as exc:
                self._forget_lock(opk)
                if exc.index is not None and exc.index >= base:
                    continue  # the lock moved (another process enqueued): read it again
                raise
            for op in release_ops:
                if isinstance(op, Put) and op.sk == keys.LOCK:
                    self._wrote_lock(op)
            return handover
        effect = rec.Effect("release", rec.encode(rec.ReleaseOp(inv.service, inv.key, inv.id)))
        sk = keys.outbox(inv.journal_len * 1000 + 999)
        effects.append(effect)
        outbox_keys.append(sk)
        due = self.clock.now_ms() + self.config.recovery_grace_ms
        await self.backend.write([*ops, Put(keys.inv(inv.id), sk, rec.encode(effect), due_ms=due)])
        return None

    async def _release_ops(
        self, service: str, key: str, holder: str
    ) -> tuple[list[WriteOp], Claimed | str | None] | None:
        """Operations passing ``service/key``'s lock from ``holder`` to the next in its inbox,
        and the next invocation (claimed by this engine, or just its id to dispatch).

        None when the hand-over needs the slow path (the next entry already completed).
        """
        opk = keys.obj(service, key)
        item = await self._read_lock(opk)
        lock = _lock_decoder.decode(item.value) if item is not None else None
        if lock is None or lock.holder != holder:
            # Deciding to write nothing must not rest on a cached copy: read the record.
            self._forget_lock(opk)
            item = await self.backend.get(opk, keys.LOCK)
            if item is None:
                return [], None
            lock = _lock_decoder.decode(item.value)
            if lock.holder != holder:
                return [], None
        assert item is not None
        if lock.head >= lock.tail:
            lock.holder = None
            return [Put(opk, keys.LOCK, rec.encode(lock), expect=item.version)], None
        q = await self.backend.get(opk, keys.inbox(lock.head))
        if q is None:
            return None
        next_id = q.value.decode()
        meta = await self.backend.get(keys.inv(next_id), keys.META)
        if meta is None:
            return None
        nxt = msgspec.msgpack.decode(meta.value, type=rec.Invocation)
        if nxt.status != rec.Status.INBOXED:
            return None
        segment = await self.backend.get(keys.inv(next_id), keys.journal(0))
        if segment is None:
            return None
        lock.holder = next_id
        lock.head += 1
        nxt.status, due, claimed = self._initial_run_status(nxt, self.clock.now_ms())
        release_ops: list[WriteOp] = [
            Put(opk, keys.LOCK, rec.encode(lock), expect=item.version),
            Delete(opk, q.sk, expect=q.version),
            Put(meta.pk, keys.META, rec.encode(nxt), expect=meta.version, due_ms=due),
        ]
        if not claimed:
            return release_ops, next_id
        return release_ops, Claimed(nxt, meta.version + 1, decode_segment(segment.value))

    async def _fail_attempt(
        self,
        st: Claimed,
        error: AttemptError,
        ops: list[WriteOp] | None,
        *,
        stored: bool = False,
    ) -> bool:
        """Record a failed attempt: back off and retry, or pause/kill after max attempts.

        Returns whether the record (and ``ops``) were committed.
        """
        inv = st.inv
        now = self.clock.now_ms()
        inv.retry_count += 1
        inv.retry_since_stored = 1 if stored else inv.retry_since_stored + 1
        inv.last_failure = rec.Failure(error.code, error.message)
        inv.last_failure_related_command = error.related_command
        inv.lease_owner = None
        inv.lease_until_ms = None
        inv.modified_ms = now
        policy = self._retry_policy(inv)
        log.warning(
            "invocation %s %s/%s attempt failed (%d): [%d] %s",
            inv.id,
            inv.service,
            inv.handler,
            inv.retry_count,
            error.code,
            error.message,
        )
        due: int | None
        if policy.max_attempts is not None and inv.retry_count >= policy.max_attempts:
            if policy.on_max_attempts == "kill":
                return await self._complete_with_failure(
                    st, rec.Failure(error.code, error.message), ops or []
                )
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
        all_ops = st.first_write(
            Put(keys.inv(inv.id), keys.META, rec.encode(inv), expect=st.version, due_ms=due),
            ops or [],
        )
        try:
            await self.backend.write(all_ops)
        except ConflictError:
            self._rerun.add(inv.id)
            return False
        st.version += 1
        if due is not None:
            self._due_at(inv.id, due)
        else:
            self._kick.set()
        return True

    async def _complete_with_failure(
        self, st: Claimed, failure: rec.Failure, ops: list[WriteOp]
    ) -> bool:
        inv = st.inv
        now = self.clock.now_ms()
        self._mark_completed(inv, rec.Result(failure=failure), now)
        effects: list[rec.Effect] = []
        if inv.key is not None and inv.handler_kind == "exclusive":
            effects.append(
                rec.Effect("release", rec.encode(rec.ReleaseOp(inv.service, inv.key, inv.id)))
            )
        outbox_keys = [keys.outbox(inv.journal_len * 1000 + 900 + n) for n in range(len(effects))]
        pk = keys.inv(inv.id)
        extra = [
            Put(pk, sk, rec.encode(e), due_ms=now + self.config.recovery_grace_ms)
            for sk, e in zip(outbox_keys, effects, strict=True)
        ]
        try:
            await self.backend.write(
                st.first_write(
                    Put(pk, keys.META, rec.encode(inv), expect=st.version, due_ms=inv.expires_ms),
                    [*ops, *extra],
                )
            )
        except ConflictError:
            self._rerun.add(inv.id)
            return False
        st.version += 1
        await self._apply_outbox(inv.id, effects, outbox_keys)
        await self._on_completed(inv)
        return True
