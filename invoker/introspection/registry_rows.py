"""The registry as rows of ``sys_service`` and ``sys_deployment``."""

from __future__ import annotations

from invoker.introspection.rows import Row
from invoker.registry_model import DeploymentInfo, ServiceInfo


def service_row(svc: ServiceInfo) -> Row:
    """One ``sys_service`` row (latest revision)."""
    return {
        "name": svc.name,
        "revision": svc.revision,
        "public": not svc.ingress_private,
        "ty": svc.kind,
        "deployment_id": svc.deployment_id,
    }


def deployment_row(dep: DeploymentInfo) -> Row:
    """One ``sys_deployment`` row: ``ty`` is ``http`` or ``lambda``."""
    return {
        "id": dep.id,
        "ty": "lambda" if dep.arn else "http",
        "endpoint": dep.arn or dep.uri,
        "created_at": dep.created_ms,
        "min_service_protocol_version": dep.min_protocol_version,
        "max_service_protocol_version": dep.max_protocol_version,
        "services": [s.name for s in dep.services],
    }
