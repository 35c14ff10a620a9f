"""The engine's shared state and the operations every layer uses: lookups, waiting for
outcomes, delivering notifications and waking invocations.

The engine is built in layers, each a module: this core, :mod:`invoker.settling` (committing an
attempt's output), :mod:`invoker.driving` (claiming and running attempts), and
:mod:`invoker.engine` (submission and the public API).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import msgspec

from backends.api import Backend, ConflictError, Delete, Item, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.api import (
    BadRequestError,
    ConflictingRequestError,
    NotFoundError,
    Outcome,
    Target,
)
from invoker.config import EngineConfig
from invoker.ids import (
    idempotent_invocation_id,
    workflow_invocation_id,
)
from invoker.journal import Loaded, encode_segment
from invoker.processing import (
    Entry,
    notification_entry,
)
from invoker.registry import Registry
from invoker.registry_model import DEFAULT_RETRY, HandlerInfo, RetryPolicy, ServiceInfo
from invoker.transport import Transports
from restate_lambda.clock import Clock

if TYPE_CHECKING:
    from invoker.dispatch import Dispatcher
    from invoker.engine import Engine


log = logging.getLogger("restate_lambda.engine")

_STRIPPED_HEADERS = frozenset(
    {
        "connection",
        "host",
        "content-length",
        "transfer-encoding",
        "idempotency-key",
        "idempotency-expires",
        "keep-alive",
        "upgrade",
        "expect",
    }
)
_state_decoder = msgspec.msgpack.Decoder(rec.StateRecord)
_lock_decoder = msgspec.msgpack.Decoder(rec.LockRecord)


@dataclass(slots=True)
class Claimed:
    """An invocation this engine holds the lease of, with its journal in memory."""

    inv: rec.Invocation
    version: int
    entries: list[Entry]
    #: Writes that create the invocation, deferred to its first commit (see ``_submit``).
    unsaved: list[WriteOp] | None = None

    def first_write(
        self, meta: WriteOp, ops: Sequence[WriteOp], *, expires_ms: int | None = None
    ) -> list[WriteOp]:
        """``meta`` and ``ops``, preceded by the deferred creation writes the first time.

        ``expires_ms`` stamps the record and the deferred writes with a store-side expiry.
        """
        unsaved, self.unsaved = self.unsaved or [], None
        if expires_ms is not None:
            meta, *unsaved = [
                dataclasses.replace(op, expires_ms=expires_ms) if isinstance(op, Put) else op
                for op in (meta, *unsaved)
            ]
        return [meta, *unsaved, *ops]

    def append_to_unsaved_journal(self, entries: list[Entry]) -> bool:
        """Fold ``entries`` into the deferred first journal segment (one item instead of two,
        which halves the write units of a call that completes at once on DynamoDB)."""
        if not self.unsaved:
            return False
        first = self.unsaved[0]
        if not isinstance(first, Put) or first.sk != keys.journal(0):
            return False
        self.unsaved[0] = Put(first.pk, first.sk, encode_segment([*self.entries, *entries]))
        return True


class EngineCore:
    """State shared by the engine's layers (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        transports: Transports | None = None,
        config: EngineConfig | None = None,
        *,
        run_locally: bool = True,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.config = config or EngineConfig()
        self.transports = transports or Transports()
        self.registry = Registry(backend, clock, self.transports)
        self.node_id = "node_" + secrets.token_hex(6)
        self.run_locally = run_locally
        #: With ``run_locally`` False, runnable invocations and work due soon (timers, retries,
        #: delayed starts) are handed to this dispatcher (an SQS queue on AWS) instead of being
        #: driven by local tasks and the local timer loop.
        self.dispatcher = dispatcher
        #: With ``run_locally`` False, :meth:`call` still runs the invocation it waits for in
        #: this process (an ingress Lambda answers a blocking call without a queue hop).
        self.inline_calls = True
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._rerun: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._locks: dict[str, Item] = {}
        self._attempt_slots = asyncio.Semaphore(self.config.max_concurrent_attempts)
        self._kick = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._rng = random.Random()

    async def start(self) -> None:
        """Load the registry."""
        await self.registry.load()

    async def recover_orphans(self) -> int:
        """Take over every invocation left running by a dead process on this store.

        Only safe when this process knows no other engine uses the store (the dev server holds
        an exclusive lock on its data directory); elsewhere leases expire and the sweeper
        recovers them.
        """
        count = 0
        for item in await self.backend.scan(keys.INV_PREFIX, keys.META):
            inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
            if inv.status == rec.Status.RUNNING:
                inv.status = rec.Status.READY
                inv.lease_owner = None
                try:
                    await self.backend.write(
                        [
                            Put(
                                item.pk,
                                keys.META,
                                rec.encode(inv),
                                expect=item.version,
                                due_ms=self.clock.now_ms(),
                            )
                        ]
                    )
                    count += 1
                except ConflictError:
                    continue
        return count

    async def close(self) -> None:
        """Stop driving invocations (their leases will be recovered later) and close transports."""
        self._closed = True
        tasks = list(self._drivers.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.transports.close()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def lookup(self, target: Target, *, from_ingress: bool) -> tuple[ServiceInfo, HandlerInfo]:
        """Validate a target; NotFound / BadRequest as Restate's ingress answers."""
        found = self.registry.handler(target.service, target.handler)
        if found is None:
            if self.registry.service(target.service) is None:
                raise NotFoundError(
                    f"service '{target.service}' not found, make sure to register the service "
                    "before calling it."
                )
            raise NotFoundError(
                f"the service '{target.service}' exists, but the handler '{target.handler}' "
                "was not found, check that the handler exists in the latest registered "
                "service version."
            )
        svc, handler = found
        if from_ingress and (svc.ingress_private or handler.ingress_private):
            raise BadRequestError("the invoked service is not public")
        if svc.kind == "service" and target.key is not None:
            raise BadRequestError(f"service '{svc.name}' is not keyed: call it without a key")
        if svc.kind != "service" and target.key is None:
            raise BadRequestError(f"'{svc.name}' is keyed: call it as /{svc.name}/KEY/handler")
        return svc, handler

    async def lookup_fresh(
        self, target: Target, *, from_ingress: bool
    ) -> tuple[ServiceInfo, HandlerInfo]:
        """Like :meth:`lookup`, reloading the registry once on a miss."""
        try:
            return self.lookup(target, from_ingress=from_ingress)
        except NotFoundError:
            await self.registry.refresh_if_stale(0)
            return self.lookup(target, from_ingress=from_ingress)

    def workflow_invocation_id(self, workflow: str, key: str) -> str:
        """Invocation id of a workflow's run handler for one workflow id."""
        return workflow_invocation_id(workflow, key)

    def idempotent_invocation_id(self, target: Target, idempotency_key: str) -> str:
        """Invocation id of an idempotent request."""
        return idempotent_invocation_id(target.service, target.handler, target.key, idempotency_key)

    def _initial_run_status(
        self, inv: rec.Invocation, now: int, run_here: bool = False
    ) -> tuple[rec.Status, int, bool]:
        """Claim at creation when this engine will run the invocation itself (saves a write)."""
        if self.run_locally or run_here:
            inv.lease_owner = self.node_id
            inv.lease_until_ms = now + self.config.lease_ms
            inv.attempts = 1
            inv.last_start_ms = now
            return rec.Status.RUNNING, inv.lease_until_ms, True
        return rec.Status.READY, now, False

    async def _existing(self, inv_id: str) -> rec.Invocation:
        item = await self.backend.get(keys.inv(inv_id), keys.META)
        if item is None:  # purged between the conflict and this read: extremely unlikely
            raise ConflictingRequestError("the invocation was concurrently purged; retry")
        return msgspec.msgpack.decode(item.value, type=rec.Invocation)

    async def _read_lock(self, opk: str) -> Item | None:
        """A virtual object's lock record, from the cache of the last one this engine wrote.

        The cache only saves reads: every write of the record is a compare-and-set, and a
        conflict drops the cached copy (:meth:`_forget_lock`) before the writer retries.
        """
        item = self._locks.get(opk)
        if item is None:
            item = await self.backend.get(opk, keys.LOCK)
        return item

    def _wrote_lock(self, put: Put) -> None:
        """Remember a lock record this engine just committed with ``put``."""
        if len(self._locks) > 10_000:
            self._locks.clear()
        version = (put.expect or 0) + 1
        self._locks[put.pk] = Item(put.pk, put.sk, put.value, version)

    def _forget_lock(self, opk: str) -> None:
        """Drop a cached lock record (after a conflict, or a write that bypassed the cache)."""
        self._locks.pop(opk, None)

    def _key_lock(self, service: str, key: str) -> asyncio.Lock:
        lock = self._key_locks.get((service, key))
        if lock is None:
            lock = self._key_locks[(service, key)] = asyncio.Lock()
        return lock

    def _register_waiter(self, inv_id: str) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(inv_id, []).append(future)
        return future

    def _drop_waiter(self, inv_id: str, future: asyncio.Future[Outcome]) -> None:
        futures = self._waiters.get(inv_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiters[inv_id]

    async def _await_outcome(self, inv_id: str, future: asyncio.Future[Outcome]) -> Outcome:
        """Wait for completion: woken in process, polling the store as a fallback."""
        try:
            delay = 0.5
            while True:
                done, _ = await asyncio.wait({future}, timeout=delay)
                if done:
                    return future.result()
                item = await self.backend.get(keys.inv(inv_id), keys.META)
                if item is None:
                    if inv_id in self._drivers:
                        continue  # a deferred first attempt still running here
                    raise NotFoundError("not found")
                inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
                if inv.status == rec.Status.COMPLETED:
                    return self._outcome(inv)
                delay = min(delay * 2, 5.0)
        finally:
            self._drop_waiter(inv_id, future)

    def _outcome(self, inv: rec.Invocation, *, first_response: bool = False) -> Outcome:
        """The client-facing outcome; like Restate 1.7 (which gives every ingress call an
        idempotency key) attach, output and duplicate responses carry ``idempotency-expires``,
        the first response does not."""
        result = inv.result or rec.Result(value=b"")
        expires = None if first_response or inv.invoked_by != "ingress" else inv.expires_ms
        if result.failure is not None:
            return Outcome(
                invocation_id=inv.id,
                ok=False,
                failure_code=result.failure.code,
                failure_message=result.failure.message,
                failure_metadata=dict(result.failure.metadata),
                idempotency_expires_ms=expires,
            )
        value = result.value or b""
        ct = inv.output_content_type
        return Outcome(
            invocation_id=inv.id,
            ok=True,
            value=value,
            content_type=ct,
            idempotency_expires_ms=expires,
        )

    def _resolve_waiters(self, inv: rec.Invocation) -> None:
        futures = self._waiters.pop(inv.id, None)
        if not futures:
            return
        outcome = self._outcome(inv, first_response=True)
        for f in futures:
            if not f.done():
                f.set_result(outcome)

    async def attach(self, invocation_id: str) -> Outcome:
        """Wait for an invocation's outcome."""
        future = self._register_waiter(invocation_id)
        item = await self.backend.get(keys.inv(invocation_id), keys.META)
        if item is None:
            self._drop_waiter(invocation_id, future)
            raise NotFoundError("not found")
        inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
        if inv.status == rec.Status.COMPLETED:
            self._drop_waiter(invocation_id, future)
            return self._outcome(inv)
        return await self._await_outcome(invocation_id, future)

    async def output(self, invocation_id: str) -> Outcome:
        """The outcome now, or NotReadyError."""
        from invoker.api import NotReadyError

        item = await self.backend.get(keys.inv(invocation_id), keys.META)
        if item is None:
            raise NotFoundError("invocation not found")
        inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
        if inv.status != rec.Status.COMPLETED:
            raise NotReadyError("the invocation exists but has not completed yet")
        return self._outcome(inv)

    def _due_at(self, inv_id: str, due_ms: int) -> None:
        """Something of ``inv_id`` (timer, retry backoff, delayed start) is due at ``due_ms``.

        Wakes the local timer loop; with a :attr:`dispatcher` (and ``run_locally`` False) also
        asks it to deliver a wake-up at that time (SQS delay for anything within 15 minutes;
        the scheduled sweeper covers the rest).
        """
        self._kick.set()
        if self.dispatcher is not None and not self.run_locally and not self._closed:
            self._spawn(self.dispatcher.schedule(inv_id, due_ms))

    def _retention_ms(self, inv: rec.Invocation) -> int:
        """How long a completed invocation stays attachable (handler, then service settings)."""
        found = self.registry.handler(inv.service, inv.handler)

        def pick(field: str) -> int | None:
            if found is None:
                return None
            value: int | None = getattr(found[1], field)
            if value is None:
                value = getattr(found[0], field)
            return value

        if inv.handler_kind == "workflow":
            wf = pick("workflow_retention_ms")
            return wf if wf is not None else self.config.workflow_retention_ms
        idem = pick("idempotency_retention_ms")
        if inv.idempotency_key and idem is not None:
            return idem
        journal = pick("journal_retention_ms")
        return journal if journal is not None else self.config.journal_retention_ms

    def _mark_completed(self, inv: rec.Invocation, result: rec.Result, now: int) -> None:
        """Turn ``inv`` into a completed record with ``result``, kept for its retention."""
        inv.status = rec.Status.COMPLETED
        inv.result = result
        inv.completed_ms = now
        inv.modified_ms = now
        inv.expires_ms = now + self._retention_ms(inv)
        inv.lease_owner = None
        inv.lease_until_ms = None

    def _output_content_type(self, inv: rec.Invocation, value: bytes) -> str | None:
        found = self.registry.handler(inv.service, inv.handler)
        if found is None:
            return "application/json" if value else None
        h = found[1]
        if not value and not h.output_set_if_empty:
            return None
        return h.output_content_type

    def _retry_policy(self, inv: rec.Invocation) -> RetryPolicy:
        found = self.registry.handler(inv.service, inv.handler)
        if found is not None:
            return found[1].retry_policy or found[0].retry_policy or DEFAULT_RETRY
        return DEFAULT_RETRY

    async def _on_completed(self, inv: rec.Invocation) -> None:
        """Deliver the result to waiting invocations and local callers."""
        self._resolve_waiters(inv)
        for item in await self.backend.query(keys.inv(inv.id), keys.WAITER_PREFIX):
            waiter_id, cid = _parse_waiter(item.sk)
            msg_type = msgspec.msgpack.decode(item.value, type=int)
            await self.deliver_completion(waiter_id, msg_type, cid, inv.result)
        self._kick.set()

    async def deliver_completion(
        self, target: str, msg_type: int, completion_id: int, result: rec.Result | None
    ) -> None:
        """Deliver a completion notification to ``target`` and wake it if it waits for it."""
        entry = notification_entry(msg_type, completion_id, result)
        await self.deliver(target, keys.completion_notification(completion_id), entry)

    async def deliver(self, target: str, sk: str, entry: Entry) -> bool:
        """Store a notification for ``target`` (first writer wins), then wake it.

        Returns False when the target does not exist or has completed.
        """
        pk = keys.inv(target)
        note = rec.PendingNotification(self.clock.now_ms(), entry[0], entry[1])
        for _ in range(20):
            meta = await self.backend.get(pk, keys.META)
            if meta is None:
                return False
            inv = msgspec.msgpack.decode(meta.value, type=rec.Invocation)
            if inv.status == rec.Status.COMPLETED:
                return False
            try:
                await self.backend.write(
                    [
                        # the meta check ensures a purge cannot race with the put
                        Put(pk, sk, rec.encode(note)),
                        _check(pk, meta.version),
                    ]
                )
            except ConflictError as exc:
                if exc.index == 0:
                    return True  # already delivered
                continue
            await self._wake(target)
            return True
        log.warning("could not deliver a notification to %s: too much contention", target)
        return False

    async def _wake(self, inv_id: str) -> None:
        """Make a suspended invocation runnable when a pending notification satisfies it."""
        if inv_id in self._drivers:
            self._rerun.add(inv_id)
            return
        self.dispatch(inv_id)

    async def _apply_outbox(
        self, inv_id: str, effects: Sequence[rec.Effect], outbox_keys: Sequence[str]
    ) -> None:
        if not effects:
            return
        from invoker.effects import apply_effect

        for effect in effects:
            try:
                # the concrete engine is always the full Engine (effects create children)
                await apply_effect(cast("Engine", self), inv_id, effect)
            except Exception:
                log.exception("effect %s of %s failed; the sweeper will retry", effect.kind, inv_id)
                return
        pk = keys.inv(inv_id)
        with contextlib.suppress(ConflictError):
            await self.backend.write([Delete(pk, sk) for sk in outbox_keys])

    def dispatch_if_pending(self, inv_id: str) -> None:
        """Re-examine a just-suspended invocation: a notification may already be waiting."""
        self._rerun.add(inv_id)

    async def _release(self, service: str, key: str, holder: str | None) -> None:
        """Pass an object's lock from ``holder`` to the next queued invocation (or free it)."""
        from invoker.effects import release_lock

        await release_lock(self, service, key, holder)

    async def _purge_loaded(self, loaded: Loaded, items: list[Any]) -> None:
        from invoker.lifecycle import purge_items

        await purge_items(self, loaded.invocation, items)

    def dispatch(self, inv_id: str, claimed: Claimed | None = None) -> None:
        """Make sure some engine drives ``inv_id`` soon (implemented by the driving layer)."""
        raise NotImplementedError


def _check(pk: str, version: int) -> WriteOp:
    from backends.api import Check

    return Check(pk, keys.META, expect=version)


def _parse_waiter(sk: str) -> tuple[str, int]:
    body = sk[len(keys.WAITER_PREFIX) :]
    waiter_id, _, cid = body.rpartition("/")
    return waiter_id, int(cid)
