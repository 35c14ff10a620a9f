"""Driving invocations: claiming them (with their pending notifications), running attempts
against deployments, and queueing exclusive handlers behind their key's lock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from backends.api import ConflictError, Delete, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.api import (
    ConflictingRequestError,
)
from invoker.ids import (
    invocation_id_bytes,
)
from invoker.journal import (
    encode_segment,
    load_partition,
    resolved_of,
    satisfied,
)
from invoker.processing import (
    AttemptError,
    AttemptInput,
    Entry,
    ProtocolViolation,
    process,
    state_key_bytes,
)
from invoker.transport import Exchange, TransportError
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.framing import decode_all, encode_raw
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import pb

if TYPE_CHECKING:
    pass

from invoker.engine_core import Claimed, _lock_decoder, _state_decoder
from invoker.settling import Settling

log = logging.getLogger("restate_lambda.engine")


class Driving(Settling):
    """Claims and runs attempts."""

    def dispatch(self, inv_id: str, claimed: Claimed | None = None) -> None:
        """Make sure ``inv_id`` is driven soon (no-op duplicates are fine).

        Locally by a task of this engine; or, with ``run_locally`` False and a
        :attr:`dispatcher`, by whichever process receives the dispatcher's message (an invocation
        this engine already drives or has claimed stays here).
        """
        if self._closed:
            return
        if inv_id in self._drivers:
            self._rerun.add(inv_id)
            return
        if claimed is None and not self.run_locally and self.dispatcher is not None:
            self._spawn(self.dispatcher.dispatch(inv_id))
            return
        self._start_driver(inv_id, self._drive(inv_id, claimed))

    def _start_driver(self, inv_id: str, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._drivers[inv_id] = task
        task.add_done_callback(lambda _t: self._drivers.pop(inv_id, None))
        return task

    async def drive(self, inv_id: str, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Drive ``inv_id`` in this process until it completes, suspends, backs off or turns out
        to be held by another engine (a Lambda worker's unit of work).

        ``before`` runs first, while ``inv_id`` already counts as driven here, so wake-ups it
        causes (e.g. firing the invocation's due timers) continue here instead of being
        dispatched elsewhere. Errors that stopped the driving (storage unavailable, ...) are
        raised, so that the caller can ask for a redelivery. Outgoing dispatches and effects may
        still be in flight when this returns: see :meth:`drain`.
        """
        task = self._drivers.get(inv_id)
        if task is not None:
            self._rerun.add(inv_id)
            await asyncio.shield(task)
            return

        async def run() -> None:
            if before is not None:
                await before()
            await self._drive(inv_id, None, reraise=True)

        await asyncio.shield(self._start_driver(inv_id, run()))

    async def drain(self) -> None:
        """Wait until nothing is driven and no background work (effects, dispatcher messages)
        is pending: what a Lambda entry point awaits before returning (the sandbox freezes)."""
        while True:
            tasks = [*self._drivers.values(), *self._background]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def _drive(self, inv_id: str, claimed: Claimed | None, reraise: bool = False) -> None:
        try:
            while True:
                self._rerun.discard(inv_id)
                st = claimed or await self._claim(inv_id)
                claimed = None
                if st is not None:
                    async with self._attempt_slots:
                        try:
                            await self._run(st)
                        except Exception as exc:
                            # A bug or a storage outage: fail the attempt so it is retried with
                            # backoff instead of waiting for the lease to expire.
                            log.exception("attempt of %s failed unexpectedly", inv_id)
                            with contextlib.suppress(Exception):
                                await self._fail_attempt(
                                    st, AttemptError(500, f"internal error: {exc!r}"), None
                                )
                if inv_id not in self._rerun:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("driving invocation %s failed; the sweeper will retry it", inv_id)
            if reraise:
                raise

    async def _claim(self, inv_id: str) -> Claimed | None:
        """Lease a runnable invocation, moving pending notifications into its journal."""
        items = await self.backend.query(keys.inv(inv_id))
        loaded = load_partition(items)
        if loaded is None:
            return None
        inv = loaded.invocation
        now = self.clock.now_ms()
        status = inv.status
        if status == rec.Status.COMPLETED:
            if inv.expires_ms is not None and inv.expires_ms <= now:
                await self._purge_loaded(loaded, items)
            return None
        if status in (rec.Status.INBOXED, rec.Status.PAUSED):
            return None
        if status == rec.Status.SCHEDULED and (inv.scheduled_ms or 0) > now:
            return None
        if status == rec.Status.SCHEDULED and inv.handler_kind == "exclusive" and inv.key:
            # A delayed call to an exclusive handler: now it queues for the key's lock.
            await self._enqueue_exclusive(inv, [], loaded.entries, meta_version=loaded.version)
            return None
        if status == rec.Status.BACKING_OFF and (inv.next_retry_ms or 0) > now:
            return None
        if (
            status == rec.Status.RUNNING
            and inv.lease_owner != self.node_id
            and (inv.lease_until_ms or 0) > now
        ):
            return None
        resolved = resolved_of(loaded.entries)
        new_entries: list[Entry] = []
        ops: list[WriteOp] = []
        new_completions: set[int] = set()
        new_signals: set[int] = set()
        new_named: set[str] = set()
        for item, note in loaded.pending:
            entry = (note.msg_type, note.payload)
            ops.append(Delete(item.pk, item.sk, expect=item.version))
            from invoker.processing import notification_ids

            cid, sid, name = notification_ids(entry)
            if cid is not None and cid in resolved.completions:
                continue
            if sid is not None and sid in resolved.signals:
                continue
            resolved.add(entry)
            new_entries.append(entry)
            if cid is not None:
                new_completions.add(cid)
            if sid is not None:
                new_signals.add(sid)
            if name is not None:
                new_named.add(name)
        if status == rec.Status.SUSPENDED and not satisfied(
            inv, new_completions, new_signals, new_named
        ):
            return None
        if new_entries:
            ops.append(
                Put(keys.inv(inv_id), keys.journal(inv.journal_len), encode_segment(new_entries))
            )
            inv.journal_len += len(new_entries)
            loaded.entries.extend(new_entries)
        inv.status = rec.Status.RUNNING
        inv.lease_owner = self.node_id
        inv.lease_until_ms = now + self.config.lease_ms
        inv.attempts += 1
        inv.last_start_ms = now
        inv.modified_ms = now
        inv.waiting_completions = []
        inv.waiting_signals = []
        inv.waiting_named_signals = []
        ops.insert(
            0,
            Put(
                keys.inv(inv_id),
                keys.META,
                rec.encode(inv),
                expect=loaded.version,
                due_ms=inv.lease_until_ms,
            ),
        )
        try:
            await self.backend.write(ops)
        except ConflictError:
            self._rerun.add(inv_id)  # something changed under us: look again
            return None
        return Claimed(inv, loaded.version + 1, loaded.entries)

    async def _load_state(self, inv: rec.Invocation) -> tuple[dict[str, bytes], int]:
        if inv.key is None or inv.service_kind == "service":
            return {}, 0
        item = await self.backend.get(keys.obj(inv.service, inv.key), keys.STATE)
        if item is None:
            return {}, 0
        return dict(_state_decoder.decode(item.value).entries), item.version

    async def _run(self, st: Claimed) -> None:
        """Run attempts while the invocation can make progress without waiting."""
        inv = st.inv
        state, state_version = await self._load_state(inv)
        while True:
            svc = self.registry.service(inv.service)
            if inv.deployment_id is None:
                if svc is None:
                    await self.registry.refresh_if_stale(0)
                    svc = self.registry.service(inv.service)
                if svc is None:
                    await self._fail_attempt(
                        st, AttemptError(404, f"service {inv.service} is not registered"), None
                    )
                    return
                inv.deployment_id = svc.deployment_id
            dep = self.registry.deployment(inv.deployment_id)
            if dep is None:
                await self.registry.refresh_if_stale(0)
                dep = self.registry.deployment(inv.deployment_id)
            if dep is None:
                await self._fail_attempt(
                    st, AttemptError(503, f"deployment {inv.deployment_id} is gone"), None
                )
                return
            if inv.protocol_version is None:
                inv.protocol_version = min(dep.max_protocol_version, 6)
            body = self._start_body(inv, st.entries, state)
            address = dep.arn or dep.uri or ""
            headers = {
                "content-type": f"application/vnd.restate.invocation.v{inv.protocol_version}",
                "accept": f"application/vnd.restate.invocation.v{inv.protocol_version}",
                "x-restate-invocation-id": inv.id,
                **dep.additional_headers,
            }
            if inv.key is not None:
                from urllib.parse import quote

                headers["x-restate-service-key"] = quote(inv.key, safe="")
            handler_info = self.registry.handler(inv.service, inv.handler)
            timeout = self.config.attempt_timeout_s
            if handler_info is not None:
                h = handler_info[1]
                if h.inactivity_timeout_ms is not None and h.abort_timeout_ms is not None:
                    timeout = (h.inactivity_timeout_ms + h.abort_timeout_ms) / 1000
            exchange = Exchange(
                "POST",
                f"/invoke/{inv.service}/{inv.handler}",
                headers,
                body,
                timeout_s=timeout,
                assume_role_arn=dep.assume_role_arn,
                compression=dep.lambda_compression,
            )
            try:
                reply = await self.transports.for_address(address).exchange(address, exchange)
            except TransportError as exc:
                if exc.terminal:  # e.g. over Lambda's payload limit: retrying cannot help
                    log.warning("invocation %s failed terminally: %s", inv.id, exc)
                    await self._complete_with_failure(st, rec.Failure(exc.code, str(exc)), [])
                else:
                    await self._fail_attempt(st, AttemptError(exc.code, str(exc)), None)
                return
            frames_or_error = self._reply_frames(inv, reply.status, reply.headers, reply.body)
            if isinstance(frames_or_error, AttemptError):
                await self._fail_attempt(st, frames_or_error, None)
                return
            writable = inv.service_kind == "virtual_object" and inv.handler_kind == "exclusive"
            writable = writable or inv.handler_kind == "workflow"
            try:
                processed = process(
                    frames_or_error,
                    AttemptInput(
                        invocation_id=inv.id,
                        service=inv.service,
                        handler=inv.handler,
                        key=inv.key,
                        service_kind=inv.service_kind,
                        can_write_state=writable,
                        journal_len=inv.journal_len,
                        commands_len=inv.commands_len,
                        state=state,
                        now_ms=self.clock.now_ms(),
                    ),
                )
            except ProtocolViolation as exc:
                log.warning("invocation %s: protocol violation: %s", inv.id, exc)
                await self._fail_attempt(st, AttemptError(571, f"protocol violation: {exc}"), None)
                return
            cont = await self._settle(st, processed, state_version)
            if cont is None:
                return
            state, state_version = cont

    def _start_body(
        self, inv: rec.Invocation, entries: list[Entry], state: dict[str, bytes]
    ) -> bytes:
        start = pb().StartMessage(
            id=invocation_id_bytes(inv.id),
            debug_id=inv.id,
            known_entries=len(entries),
            partial_state=False,
            key=inv.key or "",
            retry_count_since_last_stored_entry=inv.retry_since_stored,
            duration_since_last_stored_entry=max(0, self.clock.now_ms() - inv.last_stored_ms),
        )
        if (inv.protocol_version or 5) >= 6:
            start.random_seed = inv.random_seed
        for k, v in state.items():
            start.state_map.add(key=state_key_bytes(k), value=v)
        parts = [encode_raw(int(T.START), start.SerializeToString())]
        parts.extend(encode_raw(ty, payload) for ty, payload in entries)
        return b"".join(parts)

    def _reply_frames(
        self, inv: rec.Invocation, status: int, headers: dict[str, str], body: bytes
    ) -> list[tuple[int, bytes]] | AttemptError:
        if status != 200:
            snippet = body[:300].decode("utf-8", "replace")
            return AttemptError(
                status if status >= 400 else 500,
                f"deployment answered HTTP {status} for {inv.service}/{inv.handler}: {snippet}",
            )
        ct = headers.get("content-type", "")
        if not ct.startswith("application/vnd.restate.invocation.v"):
            return AttemptError(571, f"deployment answered with content-type {ct!r}")
        try:
            return [(f.type, f.payload) for f in decode_all(body)]
        except ProtocolError as exc:
            return AttemptError(571, f"malformed response stream: {exc}")

    async def _enqueue_exclusive(
        self,
        inv: rec.Invocation,
        ops: list[WriteOp],
        entries: list[Entry],
        *,
        meta_version: int = 0,
        run_here: bool = False,
    ) -> tuple[rec.Invocation, bool]:
        """Put an exclusive invocation behind its key's lock (FIFO inbox).

        ``meta_version`` 0 creates the invocation; otherwise it moves an existing (scheduled)
        invocation of that version into the inbox.
        """
        assert inv.key is not None
        opk = keys.obj(inv.service, inv.key)
        pk = keys.inv(inv.id)
        async with self._key_lock(inv.service, inv.key):
            for _ in range(100):
                now = self.clock.now_ms()
                item = await self._read_lock(opk)
                lock = _lock_decoder.decode(item.value) if item else rec.LockRecord()
                version = item.version if item else 0
                extra: list[WriteOp] = []
                claimed = False
                if lock.holder is None and lock.head == lock.tail:
                    lock.holder = inv.id
                    inv.status, due, claimed = self._initial_run_status(inv, now, run_here)
                else:
                    inv.status = rec.Status.INBOXED
                    due = None
                    extra.append(Put(opk, keys.inbox(lock.tail), inv.id.encode()))
                    lock.tail += 1
                meta = Put(pk, keys.META, rec.encode(inv), expect=meta_version, due_ms=due)
                lock_put = Put(opk, keys.LOCK, rec.encode(lock), expect=version)
                try:
                    await self.backend.write([meta, *ops, lock_put, *extra])
                except ConflictError as exc:
                    self._forget_lock(opk)
                    if meta_version:
                        current = await self.backend.get(pk, keys.META)
                        if current is None or current.version != meta_version:
                            return await self._existing(inv.id), False
                        continue
                    if exc.index == 0 or await self.backend.get(pk, keys.META) is not None:
                        return await self._existing(inv.id), False
                    continue
                self._wrote_lock(lock_put)
                if claimed:
                    self.dispatch(inv.id, Claimed(inv, meta_version + 1, entries))
                elif inv.status == rec.Status.READY:
                    self.dispatch(inv.id)
                elif lock.holder is None:
                    self._spawn(self._release(inv.service, inv.key, None))
                return inv, True
        raise ConflictingRequestError(f"too much contention on {inv.service}/{inv.key}; retry")
