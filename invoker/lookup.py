"""Resolving a call's target against the registry, with Restate's error messages."""

from __future__ import annotations

from invoker.api import BadRequestError, NotFoundError, Target
from invoker.registry import Registry
from invoker.registry_model import HandlerInfo, ServiceInfo


class Lookup:
    """Finds the service and handler a target names."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def find(self, target: Target, *, from_ingress: bool) -> tuple[ServiceInfo, HandlerInfo]:
        """Validate a target; NotFound / BadRequest as Restate's ingress answers."""
        found = self._registry.handler(target.service, target.handler)
        if found is None:
            if self._registry.service(target.service) is None:
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

    async def find_fresh(
        self, target: Target, *, from_ingress: bool
    ) -> tuple[ServiceInfo, HandlerInfo]:
        """Like :meth:`find`, reloading the registry once on a miss (another engine may have
        registered the deployment)."""
        try:
            return self.find(target, from_ingress=from_ingress)
        except NotFoundError:
            await self._registry.refresh_if_stale(0)
            return self.find(target, from_ingress=from_ingress)
