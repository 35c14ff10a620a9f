"""The admin side of the engine: deployments, services, invocation listings, state, outbox."""

from __future__ import annotations

from typing import Any

import msgspec

from backends.api import Backend
from invoker import keys
from invoker import records as rec
from invoker.admin_views import deployment_json, invocation_row, service_json
from invoker.api import BadRequestError, NotFoundError
from invoker.ids import parse_invocation_id
from invoker.journal import load_partition
from invoker.outbox import Outbox
from invoker.registry import Registry
from invoker.store import Store
from restate_lambda.clock import Clock
from restate_lambda.protocol.messages import describe


class Admin:
    """Admin operations of :class:`invoker.api.EngineApi`, mixed into the engine, which sets
    these attributes."""

    backend: Backend
    registry: Registry
    store: Store
    outbox: Outbox
    clock: Clock

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
        address = arn or uri
        if not address:
            raise BadRequestError("give the deployment's 'uri' or 'arn'")
        info, created = await self.registry.register(
            address,
            is_arn=arn is not None,
            additional_headers=dict(additional_headers or {}),
            # In process there is no HTTP version: request-response, as over HTTP/1.1.
            use_http_11=use_http_11 or address.startswith("asgi://"),
            force=force or breaking,
            dry_run=dry_run,
            assume_role_arn=assume_role_arn,
        )
        return deployment_json(info), created

    async def list_deployments(self) -> list[dict[str, Any]]:
        """All deployments."""
        await self.registry.refresh_if_stale()
        return [deployment_json(d) for d in self.registry.deployments()]

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """One deployment."""
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
        await self.registry.refresh_if_stale()
        return [service_json(s) for s in self.registry.services()]

    async def get_service(self, name: str) -> dict[str, Any]:
        """One service."""
        await self.registry.refresh_if_stale()
        svc = self.registry.service(name)
        if svc is None:
            raise NotFoundError(f"service '{name}' not found")
        return service_json(svc)

    async def list_invocations(
        self, *, include_completed: bool = True, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Invocation rows, newest first (those past their retention are gone)."""
        rows = []
        now = self.clock.now_ms()
        for item in await self.backend.scan(keys.INV_PREFIX, keys.META):
            inv = msgspec.msgpack.decode(item.value, type=rec.Invocation)
            if rec.past_retention(inv, now):
                continue
            if include_completed or inv.status != rec.Status.COMPLETED:
                rows.append(inv)
        rows.sort(key=lambda i: (-i.created_ms, i.id))
        return [invocation_row(i) for i in rows[:limit]]

    async def describe_invocation(self, invocation_id: str) -> dict[str, Any]:
        """An invocation's row plus its journal and pending outbox items."""
        try:
            parse_invocation_id(invocation_id)
        except ValueError as exc:
            raise BadRequestError(f"invalid invocation id {invocation_id!r}: {exc}") from exc
        loaded = load_partition(await self.backend.query(keys.inv(invocation_id)))
        if loaded is None or rec.past_retention(loaded.invocation, self.clock.now_ms()):
            raise NotFoundError(f"invocation {invocation_id} not found")
        row = invocation_row(loaded.invocation)
        row["journal"] = [
            {"index": n, "entry_type": describe(ty), "size": len(payload)}
            for n, (ty, payload) in enumerate(loaded.entries)
        ]
        return row

    async def get_state(self, service: str, key: str) -> dict[str, bytes]:
        """The K/V state of one object or workflow instance."""
        state, _version = await self.store.state(service, key)
        return state

    async def dead_outbox(self) -> list[dict[str, Any]]:
        """Outbox items that failed too often and wait for an operator."""
        out = []
        for item, record in await self.outbox.dead_items():
            out.append(
                {
                    "invocation_id": item.pk[len(keys.INV_PREFIX) :],
                    "item": item.sk,
                    "effects": [e.kind for e in record.effects],
                    "failed_effect": record.done,
                    "tries": record.tries,
                    "error": record.error,
                }
            )
        return out

    async def retry_dead_outbox(self, invocation_id: str, item: str) -> None:
        """Re-arm a dead outbox item."""
        if not await self.outbox.retry(keys.inv(invocation_id), item):
            raise NotFoundError(f"no outbox item {item} of invocation {invocation_id}")
