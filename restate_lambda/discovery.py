"""The discovery manifest (v2-v4) of an endpoint: services, handler kinds, schemas, options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from restate_lambda.options import InvocationRetryPolicy, millis, with_schedules
from restate_lambda.serde import DefaultSerde, json_schema

if TYPE_CHECKING:
    from restate_lambda.endpoint_config import EndpointConfig
    from restate_lambda.handler import Handler
    from restate_lambda.service import AnyService

_SERVICE_TYPES = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}
_HANDLER_TYPES = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}


def _retry(p: InvocationRetryPolicy | None) -> dict[str, Any]:
    if p is None:
        return {}
    return {
        "retry_policy_initial_interval": millis(p.initial_interval),
        "retry_policy_max_interval": millis(p.max_interval),
        "retry_policy_max_attempts": p.max_attempts,
        "retry_policy_exponentiation_factor": p.exponentiation_factor,
        "retry_policy_on_max_attempts": p.on_max_attempts.upper() if p.on_max_attempts else None,
    }


def _schema(h: Handler, tp: Any, optional: bool, serde: Any) -> Any:
    if not isinstance(serde, DefaultSerde) or tp is None:
        return None
    schema = json_schema(tp)
    if optional and isinstance(schema, dict) and isinstance(schema.get("type"), str):
        schema = {**schema, "type": [schema["type"], "null"]}
    return schema


def _handler(h: Handler) -> Any:
    from restate_lambda.protocol.manifest import Handler as MHandler
    from restate_lambda.protocol.manifest import InputPayload, OutputPayload

    o = h.options
    inp = (
        InputPayload()
        if h.void_input
        else InputPayload(
            required=False,
            content_type=h.accept,
            json_schema=_schema(h, h.input_type, h.optional_input, h.input_serde),
        )
    )
    out = (
        OutputPayload(set_content_type_if_empty=False)
        if h.void_output
        else OutputPayload(
            set_content_type_if_empty=False,
            content_type=h.content_type,
            json_schema=_schema(h, h.output_type, h.optional_output, h.output_serde),
        )
    )
    return MHandler(
        name=h.name,
        ty=_HANDLER_TYPES[h.kind] if h.kind else None,  # type: ignore[arg-type]
        input=inp,
        output=out,
        documentation=h.description,
        metadata=with_schedules(o.metadata, o.schedules),
        inactivity_timeout=millis(o.inactivity_timeout),
        abort_timeout=millis(o.abort_timeout),
        journal_retention=millis(o.journal_retention),
        idempotency_retention=millis(o.idempotency_retention),
        workflow_completion_retention=millis(o.workflow_retention),
        enable_lazy_state=o.enable_lazy_state,
        ingress_private=o.ingress_private,
        **_retry(o.invocation_retry_policy),
    )


def _service(s: AnyService) -> Any:
    from restate_lambda.protocol.manifest import Service as MService

    tag = s.service_tag
    return MService(
        name=s.name,
        ty=_SERVICE_TYPES[tag.kind],  # type: ignore[arg-type]
        handlers=[_handler(h) for h in s.handlers.values()],
        documentation=tag.description,
        metadata=tag.metadata,
        inactivity_timeout=millis(s.inactivity_timeout),
        abort_timeout=millis(s.abort_timeout),
        journal_retention=millis(s.journal_retention),
        idempotency_retention=millis(s.idempotency_retention),
        enable_lazy_state=s.enable_lazy_state if tag.kind != "service" else None,
        ingress_private=s.ingress_private,
        **_retry(s.invocation_retry_policy),
    )


def manifest_json(endpoint: EndpointConfig, version: int, mode: str) -> bytes:
    """The manifest of ``endpoint`` as manifest ``version`` JSON in protocol ``mode``."""
    from restate_lambda.protocol.manifest import EndpointManifest, encode_manifest

    m = EndpointManifest(
        min_protocol_version=5,
        max_protocol_version=6,
        services=[_service(s) for s in endpoint.services.values()],
        protocol_mode=mode,  # type: ignore[arg-type]
    )
    return encode_manifest(m, version)
