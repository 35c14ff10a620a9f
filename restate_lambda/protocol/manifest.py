"""The endpoint (discovery) manifest, versions 1-4, as msgspec Structs.

JSON names are camelCase; durations are integers in milliseconds. Per version:
v2 adds documentation/metadata, v3 adds the timeout/retention/lazy-state/private
options, v4 adds the retry policy fields and ``lambdaCompression``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

ProtocolMode = Literal["BIDI_STREAM", "REQUEST_RESPONSE"]
ServiceType = Literal["SERVICE", "VIRTUAL_OBJECT", "WORKFLOW"]
HandlerType = Literal["EXCLUSIVE", "SHARED", "WORKFLOW"]
OnMaxAttempts = Literal["PAUSE", "KILL"]
LambdaCompression = Literal["zstd"]

SERVICE: Final = "SERVICE"
VIRTUAL_OBJECT: Final = "VIRTUAL_OBJECT"
WORKFLOW: Final = "WORKFLOW"
EXCLUSIVE: Final = "EXCLUSIVE"
SHARED: Final = "SHARED"
BIDI_STREAM: Final = "BIDI_STREAM"
REQUEST_RESPONSE: Final = "REQUEST_RESPONSE"

Millis = Annotated[int, msgspec.Meta(ge=0)]
ProtocolVersionNumber = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]


class ManifestError(ValueError):
    """The manifest is not valid JSON, does not match the schema, or is inconsistent."""


class _Base(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=False):
    pass


class InputPayload(_Base):
    """What a handler accepts as request body."""

    required: bool | None = None
    content_type: str | None = None
    json_schema: Any | None = None


class OutputPayload(_Base):
    """What a handler returns as response body."""

    content_type: str | None = None
    set_content_type_if_empty: bool | None = None
    json_schema: Any | None = None


class _Options(_Base):
    """Options shared by services and handlers (v3+, retry policy v4+)."""

    documentation: str | None = None
    metadata: dict[str, str] | None = None
    inactivity_timeout: Millis | None = None
    abort_timeout: Millis | None = None
    journal_retention: Millis | None = None
    idempotency_retention: Millis | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy_initial_interval: Millis | None = None
    retry_policy_max_interval: Millis | None = None
    retry_policy_max_attempts: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_policy_exponentiation_factor: float | None = None
    retry_policy_on_max_attempts: OnMaxAttempts | None = None


class Handler(_Options, kw_only=True):
    """One handler of a service."""

    name: str
    ty: HandlerType | None = None
    input: InputPayload | None = None
    output: OutputPayload | None = None
    workflow_completion_retention: Millis | None = None


class Service(_Options, kw_only=True):
    """One service (plain service, virtual object or workflow)."""

    name: str
    ty: ServiceType
    handlers: list[Handler]


class EndpointManifest(_Base, kw_only=True):
    """The document a deployment returns from ``GET /discover``."""

    min_protocol_version: ProtocolVersionNumber
    max_protocol_version: ProtocolVersionNumber
    services: list[Service]
    protocol_mode: ProtocolMode | None = None
    lambda_compression: LambdaCompression | None = None

    def service(self, name: str) -> Service | None:
        """The service called ``name``, if any."""
        return next((s for s in self.services if s.name == name), None)


_V2_ONLY = ("documentation", "metadata")
_V3_FIELDS = (
    "inactivity_timeout",
    "abort_timeout",
    "journal_retention",
    "idempotency_retention",
    "enable_lazy_state",
    "ingress_private",
)
_V4_FIELDS = (
    "retry_policy_initial_interval",
    "retry_policy_max_interval",
    "retry_policy_max_attempts",
    "retry_policy_exponentiation_factor",
    "retry_policy_on_max_attempts",
)


def _fields_above(version: int) -> tuple[str, ...]:
    dropped: tuple[str, ...] = ()
    if version < 4:
        dropped += _V4_FIELDS
    if version < 3:
        dropped += _V3_FIELDS
    if version < 2:
        dropped += _V2_ONLY
    return dropped


def downgrade(manifest: EndpointManifest, version: int) -> EndpointManifest:
    """A copy without the fields that manifest ``version`` does not define."""
    if version >= 4:
        return manifest
    dropped = dict.fromkeys(_fields_above(version))
    handler_dropped = dict(dropped)
    if version < 3:
        handler_dropped["workflow_completion_retention"] = None
    services = [
        msgspec.structs.replace(
            s,
            handlers=[msgspec.structs.replace(h, **handler_dropped) for h in s.handlers],
            **dropped,
        )
        for s in manifest.services
    ]
    return msgspec.structs.replace(manifest, services=services, lambda_compression=None)


def validate_manifest(manifest: EndpointManifest) -> EndpointManifest:
    """Check the cross-field rules the JSON schema cannot express; ManifestError if broken."""
    if manifest.min_protocol_version > manifest.max_protocol_version:
        raise ManifestError(
            f"minProtocolVersion {manifest.min_protocol_version} > "
            f"maxProtocolVersion {manifest.max_protocol_version}"
        )
    seen: set[str] = set()
    for svc in manifest.services:
        if not svc.name:
            raise ManifestError("service with an empty name")
        if svc.name in seen:
            raise ManifestError(f"service {svc.name!r} is declared twice")
        seen.add(svc.name)
        handler_names: set[str] = set()
        workflow_handlers = 0
        for h in svc.handlers:
            where = f"handler {svc.name}/{h.name}"
            if not h.name:
                raise ManifestError(f"service {svc.name!r} has a handler with an empty name")
            if h.name in handler_names:
                raise ManifestError(f"{where} is declared twice")
            handler_names.add(h.name)
            if h.ty is not None and svc.ty == SERVICE:
                raise ManifestError(f"{where}: handlers of a SERVICE cannot have a type")
            if h.ty == WORKFLOW:
                if svc.ty != WORKFLOW:
                    raise ManifestError(f"{where}: WORKFLOW handlers need a WORKFLOW service")
                workflow_handlers += 1
            if h.ty == EXCLUSIVE and svc.ty != VIRTUAL_OBJECT:
                raise ManifestError(f"{where}: EXCLUSIVE handlers need a VIRTUAL_OBJECT service")
        if svc.ty == WORKFLOW and workflow_handlers > 1:
            raise ManifestError(f"workflow {svc.name!r} has more than one WORKFLOW handler")
    return manifest


def decode_manifest(data: bytes | str, *, validate: bool = True) -> EndpointManifest:
    """Parse manifest JSON (any version 1-4); ManifestError with the reason if invalid."""
    try:
        manifest = msgspec.json.decode(data, type=EndpointManifest)
    except msgspec.ValidationError as e:
        raise ManifestError(f"invalid endpoint manifest: {e}") from None
    except msgspec.DecodeError as e:
        raise ManifestError(f"endpoint manifest is not valid JSON: {e}") from None
    return validate_manifest(manifest) if validate else manifest


def encode_manifest(manifest: EndpointManifest, version: int = 4) -> bytes:
    """Serialize as manifest ``version`` JSON (fields newer than that version are dropped)."""
    return msgspec.json.encode(downgrade(manifest, version))
