"""The durable-execution engine: a small front over parts that each hold one concept.

Every operation is a short transaction against the backend, so any number of engines may run
against one store; correctness comes from conditional writes, never from being alone:

* an invocation is driven by whoever wins the compare-and-set of its record (a *claim*, with a
  lease longer than an attempt may take: :mod:`invoker.claims`, :mod:`invoker.policies`);
* each attempt's outcome is one atomic commit fenced by that record's version
  (:mod:`invoker.settle`, through the one commit point :mod:`invoker.commit`);
* whatever must follow a commit (children, signals, promises, results to callers, a key's lock
  handed on) is an outbox item of that same commit (:mod:`invoker.outbox`,
  :mod:`invoker.effects`), applied at once and by the sweeper after a crash
  (:mod:`invoker.sweeper`).

The parts, wired here: submission (creating invocations, the id rule), locks (virtual object
keys and inboxes), claims, attempts, settle, drivers and runner (who drives what), delivery
(notifications and durable wake-ups), results (callers and attached invocations), promises,
lifecycle (cancel, kill, pause, resume, purge), outbox and effects, sweeper; cron schedules
(fired by the sweeper) and event subscriptions (the front methods at the end of the class).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from backends.api import Backend, ConflictError, Put
from invoker import keys, tracing
from invoker import records as rec
from invoker.api import (
    BadRequestError,
    ConflictingRequestError,
    HandlerInput,
    InvokeRequest,
    NotFoundError,
    NotReadyError,
    Outcome,
    SendResult,
    ServiceType,
    StillRunningError,
    Target,
)
from invoker.attempt import Attempts
from invoker.bidi import Bidi
from invoker.checkpoints import (
    CheckpointInvalid,
    CheckpointRefused,
    Checkpoints,
    LocalCheckpointer,
)
from invoker.claims import Claims
from invoker.commit import Committer
from invoker.config import EngineConfig
from invoker.deadlines import call_deadline
from invoker.delivery import Delivery
from invoker.drivers import Drivers
from invoker.effects import Effects
from invoker.ids import workflow_invocation_id
from invoker.lifecycle import Action, Lifecycle
from invoker.locks import ObjectLocks
from invoker.lookup import Lookup
from invoker.notify_watch import NotificationWatch
from invoker.operations import Operations
from invoker.outbox import Outbox
from invoker.outcomes import LocalWaiters, outcome_of
from invoker.policies import Leases, Policies
from invoker.ports import Claimed, Dispatcher
from invoker.promises import Promises
from invoker.registry import Registry
from invoker.restart import Restarts
from invoker.results import Results
from invoker.runner import Runner
from invoker.schedules import Schedules
from invoker.settle import Settler
from invoker.store import Store
from invoker.submission import Submission, idempotent_id, invocation_id_for
from invoker.subscriptions import Subscriptions
from invoker.sweeper import Sweeper
from invoker.tasks import Background
from invoker.transport import Transports
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.engine")


class Engine(Operations):
    """Runs invocations against a backend; implements :class:`invoker.api.EngineApi`.

    Args:
        backend: the store.
        clock: injected time.
        transports: how deployments are reached.
        config: tunables.
        run_locally: drive invocations in tasks of this process (False on AWS: hand them to
            ``dispatcher``, except the blocking calls this engine answers itself).
        dispatcher: see ``run_locally``.
        sole: no other engine uses ``backend`` (``restate-lambda dev`` on the store in the data
            directory it holds locked): a blocking call to a free virtual object key then takes
            the key's lock in its first commit (see :meth:`invoker.locks.ObjectLocks.enqueue`),
            and an attempt in flight reads its notifications only when this engine may have
            written one (see :mod:`invoker.notify_watch`).
    """

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        transports: Transports | None = None,
        config: EngineConfig | None = None,
        *,
        run_locally: bool = True,
        dispatcher: Dispatcher | None = None,
        sole: bool = False,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.config = config = config or EngineConfig()
        self.transports = transports = transports or Transports()
        self.node_id = "node_" + secrets.token_hex(6)
        tracing.configure_from_env()  # traces if the OTEL_ variables ask (off: no import)
        #: With ``run_locally`` False, :meth:`call` still runs the invocation it waits for in
        #: this process (an ingress Lambda answers a blocking call without a queue hop).
        self.inline_calls = True
        self.registry = registry = Registry(backend, clock, transports)
        watch = NotificationWatch() if sole else None
        self.store = store = Store(backend, watch)
        committer = Committer(
            backend,
            retries=config.write_retries,
            retry_delay_s=config.write_retry_delay_s,
            watch=watch,
        )
        self.background = background = Background()
        self.drivers = drivers = Drivers(background, run_locally=run_locally, dispatcher=dispatcher)
        self.policies = policies = Policies(registry, config)
        leases = Leases(self.node_id, policies, run_locally=run_locally)
        self.lookup = lookup = Lookup(registry)
        self.waiters = waiters = LocalWaiters(store, drivers.is_driven, config.outcome_poll_s)
        delivery = Delivery(store, committer, clock, drivers, self.node_id)
        locks = ObjectLocks(store, committer, clock, leases, drivers, sole=sole)
        results = Results(store, committer, clock, delivery)
        self.outbox = outbox = Outbox(committer, clock, config, background)
        self.lifecycle = lifecycle = Lifecycle(
            store, committer, clock, policies, delivery, outbox, waiters, drivers
        )
        self.submission = submission = Submission(
            store, committer, clock, config, leases, locks, drivers, lifecycle.purge_if_expired
        )
        outbox.bind(
            Effects(
                store,
                lookup,
                submission,
                delivery,
                results,
                Promises(store, committer, delivery),
                locks,
                lifecycle,
            )
        )
        settler = Settler(
            store, committer, clock, config, policies, leases, locks, outbox, waiters, drivers
        )
        in_flight: dict[str, Claimed] = {}
        self.checkpoints = checkpoints = Checkpoints(store, settler, clock, in_flight)
        runner = Runner(
            store,
            Claims(store, committer, clock, leases, locks),
            Attempts(registry, transports, policies, clock, config, LocalCheckpointer(checkpoints)),
            settler,
            drivers,
            Bidi(store, settler, transports, drivers, policies, clock, config),
            config.max_concurrent_attempts,
            in_flight,
        )
        drivers.bind(runner.drive)
        self.sweeper = Sweeper(backend, clock, config, drivers, outbox, results, lifecycle)
        self.schedules = Schedules(
            backend, committer, clock, config, outbox, registry, drivers.kick.set
        )
        self.sweeper.on_due(keys.SCHEDULE_PREFIX, self._fire_schedule)
        self.subscriptions = Subscriptions(backend, committer, clock, registry)
        self.restarts = Restarts(store, committer, clock, registry, leases, locks, drivers)

    @property
    def run_locally(self) -> bool:
        """Whether invocations are driven by tasks of this process."""
        return self.drivers.run_locally

    @property
    def dispatcher(self) -> Dispatcher | None:
        """Where invocations go when not driven here."""
        return self.drivers.dispatcher

    # -- lifecycle of the engine ---------------------------------------------------------------

    async def start(self) -> None:
        """Load the registry."""
        await self.registry.load()

    async def close(self) -> None:
        """Stop driving invocations (their leases will be recovered later), close transports."""
        self.background.closed = True
        await self.drivers.close()
        await self.background.close()
        await self.transports.close()

    async def recover_orphans(self) -> int:
        """Take over every invocation left running on this store by a process that is gone.

        Only for a store this process uses alone (the dev server's SQLite file under its locked
        data directory). Shared stores recover through lease expiry instead: an engine must
        never take over attempts that another live engine is running.
        """
        count = 0
        for item in await self.backend.scan(keys.INV_PREFIX, keys.META):
            inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
            if inv.status != rec.Status.RUNNING or inv.lease_owner == self.node_id:
                continue
            inv.status = rec.Status.READY
            inv.lease_owner = None
            inv.lease_until_ms = None
            inv.modified_ms = self.clock.now_ms()
            try:
                await self.backend.write(
                    [
                        Put(
                            item.pk,
                            keys.META,
                            rec.encode(inv),
                            expect=item.version,
                            due_ms=inv.modified_ms,
                        )
                    ]
                )
                count += 1
            except ConflictError:
                continue
        return count

    async def tick(self) -> int:
        """Handle everything due now: sleeps, retries, delayed starts, leases, outbox, purges."""
        return await self.sweeper.sweep_once()

    async def run_timer_loop(self) -> None:
        """Sweep forever, waking early when this engine writes something due soon."""
        await self.sweeper.loop()

    async def drive(self, inv_id: str, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Drive ``inv_id`` here (a Lambda worker's unit of work); see :meth:`Drivers.drive`."""
        await self.drivers.drive(inv_id, before)

    async def drain(self) -> None:
        """Wait for every driver and background task (before a Lambda sandbox freezes)."""
        await self.drivers.drain()

    def pending(self) -> list[Any]:
        """Tasks still running (drivers and background work)."""
        return self.drivers.pending()

    # -- the ingress API -----------------------------------------------------------------------

    async def call(self, request: InvokeRequest) -> Outcome:
        """Submit an invocation and wait for its outcome.

        Under a call deadline (:mod:`invoker.deadlines`) the invocation is stored before it
        runs when an attempt may outlast the deadline, and the wait ends at the deadline with
        :class:`StillRunningError`: the invocation goes on and can be attached to.
        """
        svc, handler = await self.lookup.find_fresh(request.target, from_ingress=True)
        inv_id = invocation_id_for(svc, handler, request)
        deadline = call_deadline.get()
        now = self.clock.now_ms()
        short = deadline is not None and deadline - now < self.config.attempt_timeout_s * 1000
        future = self.waiters.register(inv_id)
        try:
            submitted = await self.submission.submit(
                request,
                svc,
                handler,
                inv_id=inv_id,
                run_here=self.inline_calls,
                defer=handler.kind != "workflow" and request.idempotency_key is None and not short,
            )
        except BaseException:
            self.waiters.drop(inv_id, future)
            raise
        if handler.kind == "workflow" and not submitted.created:
            self.waiters.drop(inv_id, future)
            return Outcome(
                invocation_id=inv_id,
                ok=False,
                failure_code=409,
                failure_message="the workflow method was already invoked",
            )
        if submitted.inv.status == rec.Status.COMPLETED:
            self.waiters.drop(inv_id, future)
            return outcome_of(submitted.inv)
        if deadline is None:
            return await self.waiters.wait(inv_id, future)
        try:
            async with asyncio.timeout(max(0.0, (deadline - self.clock.now_ms()) / 1000)):
                return await self.waiters.wait(inv_id, future)
        except TimeoutError:
            raise StillRunningError(
                f"invocation {inv_id} is still running; it goes on: attach to it with "
                f"GET /restate/invocation/{inv_id}/attach",
                inv_id,
            ) from None

    async def send(self, request: InvokeRequest) -> SendResult:
        """Submit an invocation without waiting for it."""
        svc, handler = await self.lookup.find_fresh(request.target, from_ingress=True)
        inv_id = invocation_id_for(svc, handler, request)
        submitted = await self.submission.submit(request, svc, handler, inv_id=inv_id)
        return SendResult(
            invocation_id=submitted.inv.id,
            previously_accepted=not submitted.created,
            execution_time_ms=submitted.inv.scheduled_ms if request.delay_ms else None,
        )

    async def attach(self, invocation_id: str) -> Outcome:
        """Wait for an invocation's outcome."""
        future = self.waiters.register(invocation_id)
        found = await self.store.invocation(invocation_id)
        if found is None or rec.past_retention(found.inv, self.clock.now_ms()):
            self.waiters.drop(invocation_id, future)
            raise NotFoundError("not found")
        if found.inv.status == rec.Status.COMPLETED:
            self.waiters.drop(invocation_id, future)
            return outcome_of(found.inv)
        return await self.waiters.wait(invocation_id, future)

    async def output(self, invocation_id: str) -> Outcome:
        """The outcome now, or NotReadyError."""
        found = await self.store.invocation(invocation_id)
        if found is None or rec.past_retention(found.inv, self.clock.now_ms()):
            raise NotFoundError("invocation not found")
        if found.inv.status != rec.Status.COMPLETED:
            raise NotReadyError("the invocation exists but has not completed yet")
        return outcome_of(found.inv)

    def workflow_invocation_id(self, workflow: str, key: str) -> str:
        """Invocation id of a workflow's run handler for one workflow id."""
        return workflow_invocation_id(workflow, key)

    def idempotent_invocation_id(self, target: Target, idempotency_key: str) -> str:
        """Invocation id of an idempotent request."""
        return idempotent_id(target, idempotency_key)

    async def resolve_awakeable(self, awakeable_id: str, value: bytes) -> None:
        """Complete an awakeable with a value."""
        await self.lifecycle.complete_awakeable(awakeable_id, rec.Result(value=value))

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Complete an awakeable with a terminal failure."""
        await self.lifecycle.complete_awakeable(
            awakeable_id, rec.Result(failure=rec.Failure(500, reason))
        )

    def is_ingress_reachable(self, target: Target) -> None:
        """Raise if ``target`` cannot be invoked from the ingress."""
        self.lookup.find(target, from_ingress=True)

    async def refresh_registry(self) -> bool:
        """Pick up registry changes made through other engines (see :class:`EngineApi`)."""
        return await self.registry.refresh_if_stale(0)

    def service_type(self, service: str) -> ServiceType:
        """The kind of a registered service, in the admin API's spelling."""
        svc = self.registry.service(service)
        if svc is None:
            raise NotFoundError(
                f"service '{service}' not found, make sure to register the service before "
                "calling it."
            )
        kinds: dict[str, ServiceType] = {
            "service": "Service",
            "virtual_object": "VirtualObject",
            "workflow": "Workflow",
        }
        return kinds[svc.kind]

    def handler_input(self, target: Target) -> HandlerInput:
        """The input rules of the target's handler."""
        _svc, h = self.lookup.find(target, from_ingress=True)
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

    async def checkpoint(
        self, invocation_id: str, token: str, journal_index: int, frames: bytes
    ) -> bytes:
        """Commit a handler's checkpoint (see :mod:`invoker.checkpoints`); the framed
        notifications journaled ahead of it. ConflictingRequestError (409) when the attempt was
        fenced off, BadRequestError for a malformed batch."""
        try:
            return await self.checkpoints.commit(invocation_id, token, journal_index, frames)
        except CheckpointRefused as exc:
            raise ConflictingRequestError(str(exc)) from exc
        except CheckpointInvalid as exc:
            raise BadRequestError(str(exc)) from exc

    async def manage_invocation(self, invocation_id: str, action: Action) -> bool:
        """cancel / kill / purge / pause / resume; True when only accepted (a pause of a
        running attempt, which takes effect as the attempt ends)."""
        return await self.lifecycle.manage(invocation_id, action)


#: The engine with the admin operations (one class now; the name is kept for callers).
RuntimeEngine = Engine
