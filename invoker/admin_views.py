"""Registry and invocation records as the admin API shows them (plain dicts).

The ingress package completes these with restate-server's defaults (``ingress.admin_models``).
"""

from __future__ import annotations

from typing import Any

from invoker import records as rec
from invoker.registry_model import DeploymentInfo, HandlerInfo, RetryPolicy, ServiceInfo

_SERVICE_TY = {"service": "Service", "virtual_object": "VirtualObject", "workflow": "Workflow"}
_HANDLER_TY = {"exclusive": "Exclusive", "shared": "Shared", "workflow": "Workflow"}


def humantime(ms: int | None) -> str | None:
    """Milliseconds as Restate's humantime strings (``1d``, ``1m``, ``500ms``)."""
    if ms is None:
        return None
    units = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
    if ms == 0:
        return "0s"
    parts = []
    rest = ms
    for name, size in units:
        if rest >= size:
            parts.append(f"{rest // size}{name}")
            rest %= size
    return " ".join(parts)


def _retry_json(policy: RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "initial_interval": humantime(policy.initial_interval_ms),
        "exponentiation_factor": policy.factor,
        "max_attempts": policy.max_attempts,
        "max_interval": humantime(policy.max_interval_ms),
        "on_max_attempts": "Kill" if policy.on_max_attempts == "kill" else "Pause",
    }


def _content_description(ct: str | None, accepts: bool = True) -> str:
    if not accepts or ct is None:
        return "none"
    return f"value with content-type '{ct}'" if ct != "application/json" else "JSON value"


def handler_json(h: HandlerInfo, service_kind: str) -> dict[str, Any]:
    """One handler."""
    out: dict[str, Any] = {
        "name": h.name,
        "public": not h.ingress_private,
        "input_description": _content_description(h.input_content_type, h.accepts_input),
        "output_description": _content_description(h.output_content_type),
        "metadata": h.metadata,
    }
    if service_kind != "service" and h.kind is not None:
        out["ty"] = _HANDLER_TY[h.kind]
    if h.documentation:
        out["documentation"] = h.documentation
    if h.input_schema is not None:
        out["input_json_schema"] = h.input_schema
    if h.output_schema is not None:
        out["output_json_schema"] = h.output_schema
    for field, value in (
        ("idempotency_retention", humantime(h.idempotency_retention_ms)),
        ("journal_retention", humantime(h.journal_retention_ms)),
        ("workflow_completion_retention", humantime(h.workflow_retention_ms)),
        ("inactivity_timeout", humantime(h.inactivity_timeout_ms)),
        ("abort_timeout", humantime(h.abort_timeout_ms)),
        ("enable_lazy_state", h.enable_lazy_state),
    ):
        if value is not None:
            out[field] = value
    retry = _retry_json(h.retry_policy)
    out["retry_policy"] = retry if retry is not None else {"max_attempts": None}
    return out


def service_json(s: ServiceInfo) -> dict[str, Any]:
    """One service (``ServiceMetadata``)."""
    out: dict[str, Any] = {
        "name": s.name,
        "ty": _SERVICE_TY[s.kind],
        "handlers": [handler_json(h, s.kind) for h in s.handlers.values()],
        "deployment_id": s.deployment_id,
        "revision": s.revision,
        "public": not s.ingress_private,
        "metadata": s.metadata,
    }
    if s.documentation:
        out["documentation"] = s.documentation
    for field, value in (
        ("idempotency_retention", humantime(s.idempotency_retention_ms)),
        ("journal_retention", humantime(s.journal_retention_ms)),
        ("workflow_completion_retention", humantime(s.workflow_retention_ms)),
        ("inactivity_timeout", humantime(s.inactivity_timeout_ms)),
        ("abort_timeout", humantime(s.abort_timeout_ms)),
        ("enable_lazy_state", s.enable_lazy_state),
    ):
        if value is not None:
            out[field] = value
    retry = _retry_json(s.retry_policy)
    if retry is not None:
        out["retry_policy"] = retry
    return out


def deployment_json(d: DeploymentInfo) -> dict[str, Any]:
    """One deployment with its services."""
    out: dict[str, Any] = {
        "id": d.id,
        "created_at": d.created_ms,
        "min_protocol_version": d.min_protocol_version,
        "max_protocol_version": d.max_protocol_version,
        "additional_headers": d.additional_headers,
        "services": [service_json(s) for s in d.services],
    }
    if d.sdk_version:
        out["sdk_version"] = d.sdk_version
    if d.arn:
        out["arn"] = d.arn
        if d.assume_role_arn:
            out["assume_role_arn"] = d.assume_role_arn
        if d.lambda_compression:
            out["compression"] = d.lambda_compression
    else:
        out["uri"] = d.uri
        out["protocol_type"] = (
            "RequestResponse" if d.protocol_mode == "REQUEST_RESPONSE" else "BidiStream"
        )
        out["http_version"] = "HTTP/1.1" if d.use_http_11 else "HTTP/2.0"
    return out


def invocation_row(inv: rec.Invocation) -> dict[str, Any]:
    """A ``sys_invocation``-like row."""
    target = (
        f"{inv.service}/{inv.key}/{inv.handler}"
        if inv.key is not None
        else (f"{inv.service}/{inv.handler}")
    )
    row: dict[str, Any] = {
        "id": inv.id,
        "target": target,
        "target_service_name": inv.service,
        "target_service_key": inv.key,
        "target_handler_name": inv.handler,
        "target_service_ty": {
            "service": "service",
            "virtual_object": "virtual_object",
            "workflow": "workflow",
        }[inv.service_kind],
        "status": inv.status.value,
        "idempotency_key": inv.idempotency_key,
        "invoked_by": inv.invoked_by,
        "invoked_by_id": inv.parent_id,
        "created_at": inv.created_ms,
        "modified_at": inv.modified_ms,
        "scheduled_start_at": inv.scheduled_ms,
        "pinned_deployment_id": inv.deployment_id,
        "pinned_service_protocol_version": inv.protocol_version,
        "journal_size": inv.journal_len,
        "retry_count": inv.retry_count,
        "next_retry_at": inv.next_retry_ms,
        "last_start_at": inv.last_start_ms,
        "last_failure": inv.last_failure.message if inv.last_failure else None,
        "last_failure_error_code": inv.last_failure.code if inv.last_failure else None,
        "last_failure_related_command": inv.last_failure_related_command,
        "completed_at": inv.completed_ms,
        "completion_retention_expires_at": inv.expires_ms,
    }
    if inv.result is not None:
        if inv.result.failure is not None:
            row["completion_result"] = "failure"
            row["completion_failure"] = f"[{inv.result.failure.code}] {inv.result.failure.message}"
        else:
            row["completion_result"] = "success"
    return row
