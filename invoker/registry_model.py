"""Deployments and services as the engine keeps them, built from discovery manifests."""

from __future__ import annotations

from typing import Any

import msgspec


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """Invocation retry policy (Restate's defaults: 500 ms x2 up to 10 s, 70 attempts, pause)."""

    initial_interval_ms: int = 500
    factor: float = 2.0
    max_interval_ms: int = 10_000
    max_attempts: int | None = 70
    on_max_attempts: str = "pause"  # pause | kill


class HandlerInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One handler of a registered service."""

    name: str
    kind: str | None = None  # exclusive | shared | workflow | None for plain services
    accepts_input: bool = True
    input_required: bool = False
    input_content_type: str | None = "application/json"
    input_schema: Any = None
    output_content_type: str | None = "application/json"
    output_set_if_empty: bool = False
    output_schema: Any = None
    ingress_private: bool = False
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry_policy: RetryPolicy | None = None
    documentation: str | None = None
    metadata: dict[str, str] = {}


class ServiceInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A registered service and the deployment that currently serves it."""

    name: str
    kind: str  # service | virtual_object | workflow
    handlers: dict[str, HandlerInfo]
    deployment_id: str
    revision: int = 1
    ingress_private: bool = False
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry_policy: RetryPolicy | None = None
    documentation: str | None = None
    metadata: dict[str, str] = {}


class DeploymentInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A registered deployment: an endpoint (URL, Lambda ARN or in-process app)."""

    id: str
    uri: str | None = None
    arn: str | None = None
    assume_role_arn: str | None = None
    additional_headers: dict[str, str] = {}
    use_http_11: bool = True
    protocol_mode: str = "REQUEST_RESPONSE"
    min_protocol_version: int = 5
    max_protocol_version: int = 6
    sdk_version: str | None = None
    lambda_compression: str | None = None
    created_ms: int = 0
    services: list[ServiceInfo] = []
    manifest: bytes = b""


DEFAULT_RETRY = RetryPolicy()
DAY_MS = 24 * 3600 * 1000


def _opt_ms(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _retry(obj: dict[str, Any]) -> RetryPolicy | None:
    keys = (
        "retryPolicyInitialInterval",
        "retryPolicyExponentiationFactor",
        "retryPolicyMaxInterval",
        "retryPolicyMaxAttempts",
        "retryPolicyOnMaxAttempts",
    )
    if not any(k in obj for k in keys):
        return None
    on_max = str(obj.get("retryPolicyOnMaxAttempts", "PAUSE")).lower()
    return RetryPolicy(
        initial_interval_ms=int(obj.get("retryPolicyInitialInterval", 500)),
        factor=float(obj.get("retryPolicyExponentiationFactor", 2.0)),
        max_interval_ms=int(obj.get("retryPolicyMaxInterval", 10_000)),
        max_attempts=_opt_int(obj.get("retryPolicyMaxAttempts", 70)),
        on_max_attempts="kill" if on_max == "kill" else "pause",
    )


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


_SERVICE_KINDS = {"SERVICE": "service", "VIRTUAL_OBJECT": "virtual_object", "WORKFLOW": "workflow"}
_HANDLER_KINDS = {"EXCLUSIVE": "exclusive", "SHARED": "shared", "WORKFLOW": "workflow"}


class ManifestError(ValueError):
    """The discovery manifest is invalid."""


def services_from_manifest(manifest: dict[str, Any], deployment_id: str) -> list[ServiceInfo]:
    """Build :class:`ServiceInfo` records from a decoded discovery manifest."""
    services = manifest.get("services")
    if not isinstance(services, list):
        raise ManifestError("manifest has no 'services' list")
    out: list[ServiceInfo] = []
    for svc in services:
        if not isinstance(svc, dict) or not isinstance(svc.get("name"), str):
            raise ManifestError("every service needs a name")
        kind = _SERVICE_KINDS.get(str(svc.get("ty", "")))
        if kind is None:
            raise ManifestError(f"service {svc['name']!r} has unknown type {svc.get('ty')!r}")
        handlers: dict[str, HandlerInfo] = {}
        for h in svc.get("handlers") or []:
            if not isinstance(h, dict) or not isinstance(h.get("name"), str):
                raise ManifestError(f"service {svc['name']!r}: every handler needs a name")
            hkind = h.get("ty")
            if kind == "service":
                handler_kind = None
            else:
                handler_kind = _HANDLER_KINDS.get(str(hkind)) if hkind else "exclusive"
                if handler_kind is None:
                    raise ManifestError(f"handler {h['name']!r} has unknown type {hkind!r}")
            inp = h.get("input") or {}
            outp = h.get("output") or {}
            accepts = "contentType" in inp or bool(inp.get("required"))
            handlers[h["name"]] = HandlerInfo(
                name=h["name"],
                kind=handler_kind,
                accepts_input=accepts,
                input_required=bool(inp.get("required", False)),
                input_content_type=inp.get("contentType"),
                input_schema=inp.get("jsonSchema"),
                output_content_type=outp.get("contentType"),
                output_set_if_empty=bool(outp.get("setContentTypeIfEmpty", False)),
                output_schema=outp.get("jsonSchema"),
                ingress_private=bool(h.get("ingressPrivate", False)),
                inactivity_timeout_ms=_opt_ms(h.get("inactivityTimeout")),
                abort_timeout_ms=_opt_ms(h.get("abortTimeout")),
                journal_retention_ms=_opt_ms(h.get("journalRetention")),
                idempotency_retention_ms=_opt_ms(h.get("idempotencyRetention")),
                workflow_retention_ms=_opt_ms(h.get("workflowCompletionRetention")),
                enable_lazy_state=h.get("enableLazyState"),
                retry_policy=_retry(h),
                documentation=h.get("documentation"),
                metadata=dict(h.get("metadata") or {}),
            )
        out.append(
            ServiceInfo(
                name=svc["name"],
                kind=kind,
                handlers=handlers,
                deployment_id=deployment_id,
                ingress_private=bool(svc.get("ingressPrivate", False)),
                inactivity_timeout_ms=_opt_ms(svc.get("inactivityTimeout")),
                abort_timeout_ms=_opt_ms(svc.get("abortTimeout")),
                journal_retention_ms=_opt_ms(svc.get("journalRetention")),
                idempotency_retention_ms=_opt_ms(svc.get("idempotencyRetention")),
                workflow_retention_ms=_opt_ms(svc.get("workflowCompletionRetention")),
                enable_lazy_state=svc.get("enableLazyState"),
                retry_policy=_retry(svc),
                documentation=svc.get("documentation"),
                metadata=dict(svc.get("metadata") or {}),
            )
        )
    return out
