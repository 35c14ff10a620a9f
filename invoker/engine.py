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

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from backends.api import Backend, ConflictError, Item, Put
from invoker import keys
from invoker import records as rec
from invoker.admin import Admin
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
    Target,
)
from invoker.attempt import Attempts
from invoker.checkpoints import (
    CheckpointInvalid,
    CheckpointRefused,
    Checkpoints,
    LocalCheckpointer,
)
from invoker.claims import Claims
from invoker.commit import Committer
from invoker.config import EngineConfig
from invoker.delivery import Delivery
from invoker.drivers import Drivers
from invoker.effects import Effects
from invoker.ids import workflow_invocation_id
from invoker.lifecycle import Action, Lifecycle
from invoker.locks import ObjectLocks
from invoker.lookup import Lookup
from invoker.outbox import Outbox
from invoker.outcomes import LocalWaiters, outcome_of
from invoker.policies import Leases, Policies
from invoker.ports import Claimed, Dispatcher
from invoker.promises import Promises
from invoker.registry import Registry
from invoker.restart import Restarts
from invoker.results import Results
from invoker.runner import Runner
from invoker.schedule_requests import request_kwargs, schedule_json
from invoker.schedules import Schedules
from invoker.settle import Settler
from invoker.store import Store
from invoker.submission import Submission, idempotent_id, invocation_id_for
from invoker.subscriptions import Subscriptions, subscription_json
from invoker.sweeper import Sweeper
from invoker.tasks import Background
from invoker.transport import Transports
from restate_lambda.clock import Clock

if TYPE_CHECKING:
    from invoker.introspection.source import IntrospectionSource

log = logging.getLogger("restate_lambda.engine")


class Engine(Admin):
    """Runs invocations against a backend; implements :class:`invoker.api.EngineApi`.

    Args:
        backend: the store.
        clock: injected time.
        transports: how deployments are reached.
        config: tunables.
        run_locally: drive invocations in tasks of this process (False on AWS: hand them to
            ``dispatcher``, except the blocking calls this engine answers itself).
        dispatcher: see ``run_locally``.
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
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.config = config = config or EngineConfig()
        self.transports = transports = transports or Transports()
        self.node_id = "node_" + secrets.token_hex(6)
        #: With ``run_locally`` False, :meth:`call` still runs the invocation it waits for in
        #: this process (an ingress Lambda answers a blocking call without a queue hop).
        self.inline_calls = True
        self.registry = registry = Registry(backend, clock, transports)
        self.store = store = Store(backend)
        committer = Committer(
            backend, retries=config.write_retries, retry_delay_s=config.write_retry_delay_s
        )
        self.background = background = Background()
        self.drivers = drivers = Drivers(background, run_locally=run_locally, dispatcher=dispatcher)
        self.policies = policies = Policies(registry, config)
        leases = Leases(self.node_id, policies, run_locally=run_locally)
        self.lookup = lookup = Lookup(registry)
        self.waiters = waiters = LocalWaiters(store, drivers.is_driven, config.outcome_poll_s)
        delivery = Delivery(store, committer, clock, drivers, self.node_id)
        locks = ObjectLocks(store, committer, clock, leases, drivers)
        self.submission = submission = Submission(
            store, committer, clock, config, leases, locks, drivers
        )
        results = Results(store, committer, clock, delivery)
        self.outbox = outbox = Outbox(committer, clock, config, background)
        self.lifecycle = lifecycle = Lifecycle(
            store, committer, clock, policies, delivery, outbox, waiters, drivers
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
        """Submit an invocation and wait for its outcome."""
        svc, handler = await self.lookup.find_fresh(request.target, from_ingress=True)
        inv_id = invocation_id_for(svc, handler, request)
        future = self.waiters.register(inv_id)
        try:
            submitted = await self.submission.submit(
                request,
                svc,
                handler,
                inv_id=inv_id,
                run_here=self.inline_calls,
                defer=handler.kind != "workflow" and request.idempotency_key is None,
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
        return await self.waiters.wait(inv_id, future)

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
        if found is None:
            self.waiters.drop(invocation_id, future)
            raise NotFoundError("not found")
        if found.inv.status == rec.Status.COMPLETED:
            self.waiters.drop(invocation_id, future)
            return outcome_of(found.inv)
        return await self.waiters.wait(invocation_id, future)

    async def output(self, invocation_id: str) -> Outcome:
        """The outcome now, or NotReadyError."""
        found = await self.store.invocation(invocation_id)
        if found is None:
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

    async def manage_invocation(self, invocation_id: str, action: Action) -> None:
        """cancel / kill / purge / pause / resume."""
        await self.lifecycle.manage(invocation_id, action)

    def is_ingress_private(self, service: str, handler: str | None = None) -> bool:
        """Whether ``service`` (or its ``handler``) is ingress-private in the latest revision;
        ``False`` for an unknown service or handler."""
        svc = self.registry.service(service)
        if svc is None:
            return False
        if svc.ingress_private:
            return True
        if handler is None:
            return False
        found = self.registry.handler(service, handler)
        return found is not None and found[1].ingress_private

    async def invocation_target(self, invocation_id: str) -> Target | None:
        """The target an invocation was created for, from its record; ``None`` if absent."""
        found = await self.store.invocation(invocation_id)
        if found is None:
            return None
        return Target(service=found.inv.service, handler=found.inv.handler, key=found.inv.key)

    def introspection(self) -> IntrospectionSource:
        """Read-only store and registry access for SQL introspection (``POST /query``)."""
        from invoker.introspection.source import IntrospectionSource

        return IntrospectionSource(self.backend, self.registry)

    async def modify_state(
        self, service: str, key: str, new_state: dict[str, bytes], version: str | None = None
    ) -> None:
        """Replace one object's or workflow's K/V state (see :mod:`invoker.state_edit`)."""
        from invoker.state_edit import modify_state

        await modify_state(self.store, self.registry, service, key, new_state, version)

    # -- cron schedules ------------------------------------------------------------------------

    async def _fire_schedule(self, item: Item) -> None:
        await self.schedules.fire(item.pk[len(keys.SCHEDULE_PREFIX) :])

    async def register_deployment(
        self, uri: str | None = None, arn: str | None = None, **kwargs: Any
    ) -> tuple[dict[str, Any], bool]:
        """Register a deployment (see :class:`Admin`), then bring the schedules its handlers
        declare in step (:meth:`Schedules.sync_declared`)."""
        deployment, created = await super().register_deployment(uri, arn, **kwargs)
        info = self.registry.deployment(deployment["id"])
        if info is not None and not kwargs.get("dry_run"):
            await self.schedules.sync_declared(
                [s for s in (self.registry.service(x.name) for x in info.services) if s]
            )
        return deployment, created

    async def create_schedule(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``POST /schedules``: validate, check the target, store; (schedule JSON, created?)."""
        kwargs = request_kwargs(body)
        await self.registry.refresh_if_stale(0)
        self.schedules.check_target(kwargs["target"])
        stored, created = await self.schedules.create(self.schedules.build(**kwargs))
        return schedule_json(stored), created

    async def list_schedules(self) -> list[dict[str, Any]]:
        """``GET /schedules``."""
        return [schedule_json(s) for s in await self.schedules.all()]

    async def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        """``GET /schedules/{id}``."""
        return schedule_json((await self.schedules.require(schedule_id))[0])

    async def delete_schedule(self, schedule_id: str) -> None:
        """``DELETE /schedules/{id}``."""
        await self.schedules.delete(schedule_id)

    async def pause_schedule(self, schedule_id: str, paused: bool) -> dict[str, Any]:
        """``PATCH /schedules/{id}/pause`` and ``.../resume``."""
        return schedule_json(await self.schedules.set_paused(schedule_id, paused))

    # -- lifecycle operations with arguments -----------------------------------------------------

    async def restart_as_new(
        self, invocation_id: str, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """``PATCH /invocations/{id}/restart-as-new``: the new invocation's id."""
        return await self.restarts.restart_as_new(invocation_id, from_index, deployment)

    async def resume_invocation(self, invocation_id: str, deployment: str | None = None) -> None:
        """``PATCH /invocations/{id}/resume?deployment=``."""
        await self.lifecycle.manage(invocation_id, "resume", deployment=deployment)

    # -- event subscriptions -------------------------------------------------------------------

    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /subscriptions``."""
        return subscription_json(await self.subscriptions.create(body))

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """``GET /subscriptions``."""
        return [subscription_json(s) for s in await self.subscriptions.all()]

    async def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        """``GET /subscriptions/{id}``."""
        return subscription_json(await self.subscriptions.get(subscription_id))

    async def delete_subscription(self, subscription_id: str) -> None:
        """``DELETE /subscriptions/{id}``."""
        await self.subscriptions.delete(subscription_id)

    async def handle_event_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Deliver a Lambda event-source batch (SQS, Kinesis, DynamoDB Streams, Kafka) to the
        subscriptions of its source; the partial batch response (:mod:`invoker.event_sources`)."""
        from invoker.event_sources import handle_batch

        await self.registry.refresh_if_stale(self.config.registry_refresh_ms)
        return await handle_batch(batch, self.subscriptions, self.registry, self.send)


#: The engine with the admin operations (one class now; the name is kept for callers).
RuntimeEngine = Engine
