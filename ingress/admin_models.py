"""Admin API JSON shapes: engine dicts completed with restate-server 1.7's defaults.

The engine returns plain dicts; these functions fill in what the official ``restate`` CLI
and Restate's admin OpenAPI expect, so the engine only has to carry the essentials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]

DEFAULT_SERVICE_RETRY_POLICY: JsonDict = {
    "initial_interval": "500ms",
    "exponentiation_factor": 2.0,
    "max_attempts": 70,
    "max_interval": "1m",
    "on_max_attempts": "Pause",
}
_SERVICE_DEFAULTS: JsonDict = {
    "ty": "Service",
    "revision": 1,
    "public": True,
    "idempotency_retention": "1d",
    "journal_retention": "1d",
    "inactivity_timeout": "1m",
    "abort_timeout": "10m",
    "enable_lazy_state": False,
}
_HANDLER_DEFAULTS: JsonDict = {
    "public": True,
    "input_description": "none",
    "output_description": "none",
}
_EPOCH = "1970-01-01T00:00:00.000000000Z"


def format_timestamp(value: Any) -> str:
    """A timestamp as restate-server writes it; accepts epoch ms or an already formatted str."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = int(value)
        stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"
    return _EPOCH


def handler_json(handler: JsonDict, service_type: str) -> JsonDict:
    """A handler entry with defaults (``ty`` defaults to ``Exclusive`` on virtual objects)."""
    out: JsonDict = {**_HANDLER_DEFAULTS, **handler}
    if "ty" not in out and service_type == "VirtualObject":
        out["ty"] = "Exclusive"
    out.setdefault("retry_policy", {"max_attempts": None})
    return out


def service_json(service: JsonDict, deployment_id: str | None = None) -> JsonDict:
    """A full ``ServiceMetadata`` object."""
    out: JsonDict = {**_SERVICE_DEFAULTS, **service}
    if deployment_id is not None:
        out.setdefault("deployment_id", deployment_id)
    out.setdefault("deployment_id", "")
    if out["ty"] == "Workflow":
        out.setdefault("workflow_completion_retention", "1d")
    out.setdefault("retry_policy", dict(DEFAULT_SERVICE_RETRY_POLICY))
    out["handlers"] = [handler_json(h, out["ty"]) for h in service.get("handlers", [])]
    return out


def _deployment_common(deployment: JsonDict) -> JsonDict:
    out: JsonDict = {"id": deployment["id"]}
    if deployment.get("arn"):
        out["arn"] = deployment["arn"]
        if deployment.get("assume_role_arn"):
            out["assume_role_arn"] = deployment["assume_role_arn"]
    else:
        out["uri"] = deployment.get("uri", "")
        out["protocol_type"] = deployment.get("protocol_type", "RequestResponse")
        out["http_version"] = deployment.get("http_version", "HTTP/1.1")
    if deployment.get("additional_headers"):
        out["additional_headers"] = deployment["additional_headers"]
    out["created_at"] = format_timestamp(deployment.get("created_at"))
    out["min_protocol_version"] = deployment.get("min_protocol_version", 5)
    out["max_protocol_version"] = deployment.get("max_protocol_version", 5)
    out["sdk_version"] = deployment.get("sdk_version")
    return out


def deployment_summary_json(deployment: JsonDict) -> JsonDict:
    """A ``GET /deployments`` entry: services reduced to ``{name, revision}``."""
    out = _deployment_common(deployment)
    out["services"] = [
        {"name": s["name"], "revision": s.get("revision", 1)}
        for s in deployment.get("services", [])
    ]
    return out


def deployment_detail_json(deployment: JsonDict) -> JsonDict:
    """``GET /deployments/{id}``: the deployment with its full services."""
    out = _deployment_common(deployment)
    out["services"] = [service_json(s, deployment["id"]) for s in deployment.get("services", [])]
    return out


def registration_json(deployment: JsonDict) -> JsonDict:
    """``POST /deployments`` answer: ``{id, services, min/max_protocol_version, sdk_version}``."""
    detail = deployment_detail_json(deployment)
    return {
        "id": detail["id"],
        "services": detail["services"],
        "min_protocol_version": detail["min_protocol_version"],
        "max_protocol_version": detail["max_protocol_version"],
        "sdk_version": detail["sdk_version"],
    }
