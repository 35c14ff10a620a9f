"""The durable-execution engine: submission, attempts, suspension, retries and completion.

Every operation is a short transaction against the backend, so any number of engines may run
against one store; correctness comes from conditional writes, never from being alone:

* an invocation is driven by whoever wins the compare-and-set of its record (a *claim* with a
  lease); a crashed driver's lease expires and the sweeper hands the invocation to another;
* one attempt's output (journal segment, state, timers, outbox effects, status) is committed in
  one atomic batch fenced by that record's version;
* effects on other records (children, signals, promises, attach waiters, lock release) are
  written to the outbox in that same batch, then applied idempotently; the sweeper re-applies
  any a crash left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from backends.api import Backend, ConflictError, Delete, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.api import (
    BadRequestError,
    ConflictingRequestError,
    InvokeRequest,
    NotFoundError,
    Outcome,
    PayloadTooLargeError,
    SendResult,
    Target,
)
from invoker.config import EngineConfig
from invoker.ids import (
    idempotent_invocation_id,
    invocation_id_bytes,
    new_invocation_id,
    workflow_invocation_id,
)
from invoker.journal import (
    Loaded,
    decode_segment,
    encode_segment,
    load_partition,
    resolved_of,
    satisfied,
)
from invoker.processing import (
    AttemptError,
    AttemptInput,
    Entry,
    Processed,
    ProtocolViolation,
    notification_entry,
    process,
    state_key_bytes,
)
from invoker.registry import Registry
from invoker.registry_model import DEFAULT_RETRY, HandlerInfo, RetryPolicy, ServiceInfo
from invoker.transport import Exchange, TransportError, Transports
from restate_lambda.clock import Clock
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.framing import decode_all, encode_raw
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import pb

if TYPE_CHECKING:
    from invoker.dispatch import Dispatcher

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
_promise_decoder = msgspec.msgpack.Decoder(rec.PromiseRecord)

CANCELLED = rec.Failure(409, "cancelled")
KILLED = rec.Failure(409, "killed")


@dataclass(slots=True)
class _Claimed:
    """An invocation this engine holds the lease of, with its journal in memory."""

    inv: rec.Invocation
    version: int
    entries: list[Entry]
    #: Writes that create the invocation, deferred to its first commit (see ``_submit``).
    unsaved: list[WriteOp] | None = None

    def first_write(self, meta: WriteOp, ops: Sequence[WriteOp]) -> list[WriteOp]:
        """``meta`` and ``ops``, preceded by the deferred creation writes the first time."""
        unsaved, self.unsaved = self.unsaved or [], None
        return [meta, *unsaved, *ops]


class Engine:
    """Runs invocations against a backend; implements :class:`invoker.api.EngineApi`."""

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
        self._attempt_slots = asyncio.Semaphore(self.config.max_concurrent_attempts)
        self._kick = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._rng = random.Random()

    # ------------------------------------------------------------------ lifecycle
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

    # ------------------------------------------------------------------ lookups
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

    # ------------------------------------------------------------------ submission
    async def call(self, request: InvokeRequest) -> Outcome:
        """Submit an invocation and wait for its outcome."""
        svc, handler = await self.lookup_fresh(request.target, from_ingress=True)
        if handler.kind == "workflow":
            inv_id = workflow_invocation_id(svc.name, request.target.key or "")
            future = self._register_waiter(inv_id)
            inv, created = await self._submit(
                request, svc, handler, inv_id=inv_id, run_here=self.inline_calls
            )
            if not created:
                self._drop_waiter(inv_id, future)
                raise ConflictingRequestError("the workflow method was already invoked")
            return await self._await_outcome(inv_id, future)
        inv_id = (
            self.idempotent_invocation_id(request.target, request.idempotency_key)
            if request.idempotency_key
            else new_invocation_id()
        )
        future = self._register_waiter(inv_id)
        inv, created = await self._submit(
            request,
            svc,
            handler,
            inv_id=inv_id,
            run_here=self.inline_calls,
            defer=request.idempotency_key is None,
        )
        if inv.status == rec.Status.COMPLETED:
            self._drop_waiter(inv_id, future)
            return self._outcome(inv)
        return await self._await_outcome(inv_id, future)

    async def send(self, request: InvokeRequest) -> SendResult:
        """Submit an invocation without waiting for it."""
        svc, handler = await self.lookup_fresh(request.target, from_ingress=True)
        if handler.kind == "workflow":
            inv_id = workflow_invocation_id(svc.name, request.target.key or "")
        elif request.idempotency_key:
            inv_id = self.idempotent_invocation_id(request.target, request.idempotency_key)
        else:
            inv_id = new_invocation_id()
        inv, created = await self._submit(request, svc, handler, inv_id=inv_id)
        return SendResult(
            invocation_id=inv.id,
            previously_accepted=not created,
            execution_time_ms=inv.scheduled_ms if request.delay_ms else None,
        )

    async def _submit(
        self,
        request: InvokeRequest,
        svc: ServiceInfo,
        handler: HandlerInfo,
        *,
        inv_id: str,
        caller: rec.CallerRef | None = None,
        parent_id: str | None = None,
        scheduled_ms: int | None = None,
        run_here: bool = False,
        defer: bool = False,
    ) -> tuple[rec.Invocation, bool]:
        """Create an invocation (or find the existing one with the same id).

        ``defer``: for a blocking call with a fresh random id that this engine runs right
        away, the creation writes join the first attempt's commit instead of a write of their
        own. Nothing has been acknowledged until that commit (the client only learns the id
        with the response), so a crash before it loses nothing acknowledged.
        """
        if len(request.body) > self.config.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body of {len(request.body)} bytes exceeds the limit of "
                f"{self.config.max_body_bytes} bytes"
            )
        now = self.clock.now_ms()
        if scheduled_ms is None and request.delay_ms:
            scheduled_ms = now + request.delay_ms
        headers = [(k, v) for k, v in request.headers if k.lower() not in _STRIPPED_HEADERS]
        inv = rec.Invocation(
            id=inv_id,
            service=svc.name,
            handler=handler.name,
            key=request.target.key,
            service_kind=svc.kind,
            handler_kind=handler.kind,
            created_ms=now,
            modified_ms=now,
            scheduled_ms=scheduled_ms,
            idempotency_key=request.idempotency_key,
            invoked_by="service" if parent_id else "ingress",
            caller=caller,
            parent_id=parent_id,
            journal_len=1,
            commands_len=1,
            last_stored_ms=now,
            random_seed=self._rng.getrandbits(63),
        )
        input_msg = pb().InputCommandMessage()
        for k, v in headers:
            input_msg.headers.add(key=k, value=v)
        input_msg.value.content = request.body
        entries: list[Entry] = [(int(T.INPUT_COMMAND), input_msg.SerializeToString())]
        exclusive = svc.kind == "virtual_object" and handler.kind == "exclusive"
        pk = keys.inv(inv_id)
        ops: list[WriteOp] = [Put(pk, keys.journal(0), encode_segment(entries))]
        if caller is not None:
            ops.append(
                Put(
                    pk,
                    keys.waiter(caller.invocation_id, caller.completion_id),
                    rec.encode(int(T.CALL_COMPLETION_NOTIFICATION)),
                )
            )
        claimed = False
        if scheduled_ms is not None and scheduled_ms > now:
            inv.status = rec.Status.SCHEDULED
            due: int | None = scheduled_ms
        elif exclusive:
            return await self._enqueue_exclusive(inv, ops, entries, run_here=run_here)
        else:
            inv.status, due, claimed = self._initial_run_status(inv, now, run_here)
            if claimed and defer and svc.kind != "workflow" and not request.idempotency_key:
                self.dispatch(inv_id, _Claimed(inv, 0, entries, unsaved=ops))
                return inv, True
        meta = Put(pk, keys.META, rec.encode(inv), expect=0, due_ms=due)
        try:
            await self.backend.write([meta, *ops])
        except ConflictError:
            return await self._existing(inv_id), False
        if claimed:
            self.dispatch(inv_id, _Claimed(inv, 1, entries))
        elif inv.status == rec.Status.READY:
            self.dispatch(inv_id)
        elif due is not None:
            self._due_at(inv_id, due)
        return inv, True

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

    def _key_lock(self, service: str, key: str) -> asyncio.Lock:
        lock = self._key_locks.get((service, key))
        if lock is None:
            lock = self._key_locks[(service, key)] = asyncio.Lock()
        return lock

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
                item = await self.backend.get(opk, keys.LOCK)
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
                try:
                    await self.backend.write(
                        [meta, *ops, Put(opk, keys.LOCK, rec.encode(lock), expect=version), *extra]
                    )
                except ConflictError as exc:
                    if meta_version:
                        current = await self.backend.get(pk, keys.META)
                        if current is None or current.version != meta_version:
                            return await self._existing(inv.id), False
                        continue
                    if exc.index == 0 or await self.backend.get(pk, keys.META) is not None:
                        return await self._existing(inv.id), False
                    continue
                if claimed:
                    self.dispatch(inv.id, _Claimed(inv, meta_version + 1, entries))
                elif inv.status == rec.Status.READY:
                    self.dispatch(inv.id)
                elif lock.holder is None:
                    self._spawn(self._release(inv.service, inv.key, None))
                return inv, True
        raise ConflictingRequestError(f"too much contention on {inv.service}/{inv.key}; retry")

    # ------------------------------------------------------------------ waiting for outcomes
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

    # ------------------------------------------------------------------ driving
    def dispatch(self, inv_id: str, claimed: _Claimed | None = None) -> None:
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

    def _due_at(self, inv_id: str, due_ms: int) -> None:
        """Something of ``inv_id`` (timer, retry backoff, delayed start) is due at ``due_ms``.

        Wakes the local timer loop; with a :attr:`dispatcher` (and ``run_locally`` False) also
        asks it to deliver a wake-up at that time (SQS delay for anything within 15 minutes;
        the scheduled sweeper covers the rest).
        """
        self._kick.set()
        if self.dispatcher is not None and not self.run_locally and not self._closed:
            self._spawn(self.dispatcher.schedule(inv_id, due_ms))

    async def _drive(self, inv_id: str, claimed: _Claimed | None, reraise: bool = False) -> None:
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

    async def _claim(self, inv_id: str) -> _Claimed | None:
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
        return _Claimed(inv, loaded.version + 1, loaded.entries)

    async def _load_state(self, inv: rec.Invocation) -> tuple[dict[str, bytes], int]:
        if inv.key is None or inv.service_kind == "service":
            return {}, 0
        item = await self.backend.get(keys.obj(inv.service, inv.key), keys.STATE)
        if item is None:
            return {}, 0
        return dict(_state_decoder.decode(item.value).entries), item.version

    async def _run(self, st: _Claimed) -> None:
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

    # ------------------------------------------------------------------ settling an attempt
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

    def _output_content_type(self, inv: rec.Invocation, value: bytes) -> str | None:
        found = self.registry.handler(inv.service, inv.handler)
        if found is None:
            return "application/json" if value else None
        h = found[1]
        if not value and not h.output_set_if_empty:
            return None
        return h.output_content_type

    async def _settle(
        self, st: _Claimed, p: Processed, state_version: int
    ) -> tuple[dict[str, bytes], int] | None:
        """Commit one attempt; return the state to continue with, or None when done."""
        inv = st.inv
        now = self.clock.now_ms()
        pk = keys.inv(inv.id)
        ops: list[WriteOp] = []
        first_new = inv.journal_len
        if p.entries:
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
        if p.error is not None:
            if await self._fail_attempt(st, p.error, ops, stored=bool(p.entries)):
                st.entries.extend(p.entries)
                await self._apply_outbox(inv.id, effects, outbox_keys)
            return None
        if completed:
            assert p.output is not None
            inv.status = rec.Status.COMPLETED
            inv.result = p.output
            inv.completed_ms = now
            inv.output_content_type = self._output_content_type(inv, p.output.value or b"")
            inv.expires_ms = now + self._retention_ms(inv)
            inv.lease_owner = None
            inv.lease_until_ms = None
            inv.retry_count = 0
            due: int | None = inv.expires_ms
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
            Put(pk, keys.META, rec.encode(inv), expect=st.version, due_ms=due), ops
        )
        handover: _Claimed | str | None = None
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
        if isinstance(handover, _Claimed):
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
    ) -> _Claimed | str | None:
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
            try:
                await self.backend.write([*ops, *release_ops])
            except ConflictError as exc:
                if exc.index is not None and exc.index >= base:
                    continue  # the lock moved (another process enqueued): read it again
                raise
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
    ) -> tuple[list[WriteOp], _Claimed | str | None] | None:
        """Operations passing ``service/key``'s lock from ``holder`` to the next in its inbox,
        and the next invocation (claimed by this engine, or just its id to dispatch).

        None when the hand-over needs the slow path (the next entry already completed).
        """
        opk = keys.obj(service, key)
        item = await self.backend.get(opk, keys.LOCK)
        if item is None:
            return [], None
        lock = _lock_decoder.decode(item.value)
        if lock.holder != holder:
            return [], None
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
        return release_ops, _Claimed(nxt, meta.version + 1, decode_segment(segment.value))

    def dispatch_if_pending(self, inv_id: str) -> None:
        """Re-examine a just-suspended invocation: a notification may already be waiting."""
        self._rerun.add(inv_id)

    async def _fail_attempt(
        self,
        st: _Claimed,
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

    def _retry_policy(self, inv: rec.Invocation) -> RetryPolicy:
        found = self.registry.handler(inv.service, inv.handler)
        if found is not None:
            return found[1].retry_policy or found[0].retry_policy or DEFAULT_RETRY
        return DEFAULT_RETRY

    async def _complete_with_failure(
        self, st: _Claimed, failure: rec.Failure, ops: list[WriteOp]
    ) -> bool:
        inv = st.inv
        now = self.clock.now_ms()
        inv.status = rec.Status.COMPLETED
        inv.result = rec.Result(failure=failure)
        inv.completed_ms = now
        inv.expires_ms = now + self._retention_ms(inv)
        inv.lease_owner = None
        inv.lease_until_ms = None
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

    async def _on_completed(self, inv: rec.Invocation) -> None:
        """Deliver the result to waiting invocations and local callers."""
        self._resolve_waiters(inv)
        for item in await self.backend.query(keys.inv(inv.id), keys.WAITER_PREFIX):
            waiter_id, cid = _parse_waiter(item.sk)
            msg_type = msgspec.msgpack.decode(item.value, type=int)
            await self.deliver_completion(waiter_id, msg_type, cid, inv.result)
        self._kick.set()

    # ------------------------------------------------------------------ notifications
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

    # ------------------------------------------------------------------ outbox effects
    async def _apply_outbox(
        self, inv_id: str, effects: Sequence[rec.Effect], outbox_keys: Sequence[str]
    ) -> None:
        if not effects:
            return
        from invoker.effects import apply_effect

        for effect in effects:
            try:
                await apply_effect(self, inv_id, effect)
            except Exception:
                log.exception("effect %s of %s failed; the sweeper will retry", effect.kind, inv_id)
                return
        pk = keys.inv(inv_id)
        with contextlib.suppress(ConflictError):
            await self.backend.write([Delete(pk, sk) for sk in outbox_keys])

    # ------------------------------------------------------------------ locks
    async def _release(self, service: str, key: str, holder: str | None) -> None:
        """Pass an object's lock from ``holder`` to the next queued invocation (or free it)."""
        from invoker.effects import release_lock

        await release_lock(self, service, key, holder)

    # ------------------------------------------------------------------ purge
    async def _purge_loaded(self, loaded: Loaded, items: list[Any]) -> None:
        from invoker.lifecycle import purge_items

        await purge_items(self, loaded.invocation, items)

    # ------------------------------------------------------------------ sweeping
    async def tick(self) -> int:
        """Handle everything due now: timers, retries, delayed starts, leases, outbox, purges."""
        from invoker.sweeper import sweep_once

        return await sweep_once(self)

    async def run_timer_loop(self) -> None:
        """Sweep forever, waking early when this engine writes something due soon."""
        from invoker.sweeper import timer_loop

        await timer_loop(self)

    # The admin and ingress operations live in invoker.lifecycle / invoker.admin.
    async def resolve_awakeable(self, awakeable_id: str, value: bytes) -> None:
        """Complete an awakeable with a value."""
        from invoker.lifecycle import complete_awakeable

        await complete_awakeable(self, awakeable_id, rec.Result(value=value))

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Complete an awakeable with a terminal failure."""
        from invoker.lifecycle import complete_awakeable

        await complete_awakeable(self, awakeable_id, rec.Result(failure=rec.Failure(500, reason)))

    def is_ingress_reachable(self, target: Target) -> None:
        """Raise if ``target`` cannot be invoked from the ingress."""
        self.lookup(target, from_ingress=True)


def _check(pk: str, version: int) -> WriteOp:
    from backends.api import Check

    return Check(pk, keys.META, expect=version)


def _parse_waiter(sk: str) -> tuple[str, int]:
    body = sk[len(keys.WAITER_PREFIX) :]
    waiter_id, _, cid = body.rpartition("/")
    return waiter_id, int(cid)


class RuntimeEngine(Engine):
    """The engine plus the admin operations of :class:`invoker.api.EngineApi`."""

    def service_type(self, service: str) -> Any:
        """The kind of a registered service, in the admin API's spelling."""
        svc = self.registry.service(service)
        if svc is None:
            raise NotFoundError(
                f"service '{service}' not found, make sure to register the service before "
                "calling it."
            )
        return {"service": "Service", "virtual_object": "VirtualObject", "workflow": "Workflow"}[
            svc.kind
        ]

    def handler_input(self, target: Target) -> Any:
        """The input rules of the target's handler."""
        from invoker.api import HandlerInput

        _svc, h = self.lookup(target, from_ingress=True)
        if not h.accepts_input:
            return HandlerInput(accepts_body=False)
        ct = h.input_content_type
        is_json = ct is not None and "json" in ct.split(";")[0].lower()
        return HandlerInput(
            accepts_body=True,
            required=h.input_required,
            content_type=ct if ct else None,
            json=is_json,
        )

    async def call(self, request: InvokeRequest) -> Outcome:
        """Submit and wait; a re-submitted workflow run answers 409 like Restate."""
        try:
            return await super().call(request)
        except ConflictingRequestError as exc:
            svc = self.registry.service(request.target.service)
            if svc is not None and svc.kind == "workflow":
                return Outcome(
                    invocation_id=workflow_invocation_id(svc.name, request.target.key or ""),
                    ok=False,
                    failure_code=409,
                    failure_message=exc.message,
                )
            raise

    async def register_deployment(
        self,
        uri: str | None = None,
        arn: str | None = None,
        *,
        additional_headers: dict[str, str] | None = None,
        use_http_11: bool = False,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
        assume_role_arn: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Discover and register a deployment."""
        from invoker.admin_views import deployment_json

        address = arn or uri
        if not address:
            raise BadRequestError("give the deployment's 'uri' or 'arn'")
        info, created = await self.registry.register(
            address,
            is_arn=arn is not None,
            additional_headers=dict(additional_headers or {}),
            use_http_11=use_http_11 or arn is None,
            force=force or breaking,
            dry_run=dry_run,
            assume_role_arn=assume_role_arn,
        )
        return deployment_json(info), created

    async def list_deployments(self) -> list[dict[str, Any]]:
        """All deployments."""
        from invoker.admin_views import deployment_json

        await self.registry.refresh_if_stale()
        return [deployment_json(d) for d in self.registry.deployments()]

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """One deployment."""
        from invoker.admin_views import deployment_json

        await self.registry.refresh_if_stale()
        dep = self.registry.deployment(deployment_id)
        if dep is None:
            raise NotFoundError(f"deployment {deployment_id} not found")
        return deployment_json(dep)

    async def remove_deployment(self, deployment_id: str, force: bool = False) -> None:
        """Remove a deployment."""
        await self.registry.remove(deployment_id, force)

    async def list_services(self) -> list[dict[str, Any]]:
        """All services."""
        from invoker.admin_views import service_json

        await self.registry.refresh_if_stale()
        return [service_json(s) for s in self.registry.services()]

    async def get_service(self, name: str) -> dict[str, Any]:
        """One service."""
        from invoker.admin_views import service_json

        await self.registry.refresh_if_stale()
        svc = self.registry.service(name)
        if svc is None:
            raise NotFoundError(f"service '{name}' not found")
        return service_json(svc)

    async def manage_invocation(self, invocation_id: str, action: Any) -> None:
        """cancel / kill / purge / pause / resume."""
        from invoker.lifecycle import manage

        await manage(self, invocation_id, action)

    async def list_invocations(
        self, *, include_completed: bool = True, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Invocation rows, newest first."""
        from invoker.admin_views import invocation_row

        rows = []
        for item in await self.backend.scan(keys.INV_PREFIX, keys.META):
            inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
            if include_completed or inv.status != rec.Status.COMPLETED:
                rows.append(inv)
        rows.sort(key=lambda i: (-i.created_ms, i.id))
        return [invocation_row(i) for i in rows[:limit]]

    async def describe_invocation(self, invocation_id: str) -> dict[str, Any]:
        """An invocation's row plus its journal."""
        from invoker.admin_views import invocation_row
        from invoker.ids import parse_invocation_id
        from restate_lambda.protocol.messages import describe

        try:
            parse_invocation_id(invocation_id)
        except ValueError as exc:
            raise BadRequestError(f"invalid invocation id {invocation_id!r}: {exc}") from exc
        loaded = load_partition(await self.backend.query(keys.inv(invocation_id)))
        if loaded is None:
            raise NotFoundError(f"invocation {invocation_id} not found")
        row = invocation_row(loaded.invocation)
        row["journal"] = [
            {"index": n, "entry_type": describe(ty), "size": len(payload)}
            for n, (ty, payload) in enumerate(loaded.entries)
        ]
        return row

    async def get_state(self, service: str, key: str) -> dict[str, bytes]:
        """The K/V state of one object or workflow instance."""
        from invoker.lifecycle import get_state

        return await get_state(self, service, key)
