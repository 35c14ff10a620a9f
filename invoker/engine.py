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

The layers: :mod:`invoker.engine_core`, :mod:`invoker.settling`, :mod:`invoker.driving`, this.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from backends.api import ConflictError, Put, WriteOp
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
from invoker.ids import (
    new_invocation_id,
    workflow_invocation_id,
)
from invoker.journal import (
    encode_segment,
    load_partition,
)
from invoker.processing import (
    Entry,
)
from invoker.registry_model import HandlerInfo, ServiceInfo
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import pb

if TYPE_CHECKING:
    pass

from invoker.driving import Driving
from invoker.engine_core import _STRIPPED_HEADERS, Claimed

log = logging.getLogger("restate_lambda.engine")


class Engine(Driving):
    """Runs invocations against a backend; implements :class:`invoker.api.EngineApi`."""

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
                self.dispatch(inv_id, Claimed(inv, 0, entries, unsaved=ops))
                return inv, True
        meta = Put(pk, keys.META, rec.encode(inv), expect=0, due_ms=due)
        try:
            await self.backend.write([meta, *ops])
        except ConflictError:
            return await self._existing(inv_id), False
        if claimed:
            self.dispatch(inv_id, Claimed(inv, 1, entries))
        elif inv.status == rec.Status.READY:
            self.dispatch(inv_id)
        elif due is not None:
            self._due_at(inv_id, due)
        return inv, True

    async def tick(self) -> int:
        """Handle everything due now: timers, retries, delayed starts, leases, outbox, purges."""
        from invoker.sweeper import sweep_once

        return await sweep_once(self)

    async def run_timer_loop(self) -> None:
        """Sweep forever, waking early when this engine writes something due soon."""
        from invoker.sweeper import timer_loop

        await timer_loop(self)

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

    # --- ingress visibility (appended for the ingress; see EngineApi) ---------------------
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
        item = await self.backend.get(keys.inv(invocation_id), keys.META)
        if item is None:
            return None
        inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
        return Target(service=inv.service, handler=inv.handler, key=inv.key)
