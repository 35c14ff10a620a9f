"""The engine's admin and ingress-support operations (mixed into :class:`invoker.engine.Engine`):
visibility checks for the ingress, SQL introspection and state edits, cron schedules,
restart-as-new, event subscriptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.api import Item
from invoker import keys
from invoker.admin import Admin
from invoker.api import BadRequestError, InvokeRequest, SendResult, Target
from invoker.config import EngineConfig
from invoker.lifecycle import Lifecycle
from invoker.restart import Restarts
from invoker.schedule_requests import request_kwargs, schedule_json
from invoker.schedules import Schedules
from invoker.subscriptions import Subscriptions, subscription_json

if TYPE_CHECKING:
    from invoker.introspection.source import IntrospectionSource


class Operations(Admin):
    """Operations the engine sets the parts of (see :class:`Admin` for the pattern)."""

    config: EngineConfig
    lifecycle: Lifecycle
    schedules: Schedules
    subscriptions: Subscriptions
    restarts: Restarts

    async def send(self, request: InvokeRequest) -> SendResult:
        """Submit an invocation without waiting for it (the engine's)."""
        raise NotImplementedError

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

        return IntrospectionSource(self.backend, self.registry, self.clock)

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
        """``PATCH /invocations/{id}/resume?deployment=`` (400 for an unknown deployment)."""
        if deployment not in (None, "latest") and self.registry.deployment(deployment) is None:
            await self.registry.refresh_if_stale(0)
            if self.registry.deployment(deployment) is None:
                raise BadRequestError(
                    "The given deployment was not found when trying to resume the invocation "
                    f"'{invocation_id}'."
                )
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
