"""Codec of the Restate service protocol (V5/V6): frames, messages, ids, manifest, Lambda envelope.

Shared by the runtime (which sends ``StartMessage`` + journal and parses the answers)
and by the pure-Python SDK (which does the reverse). Submodules are loaded on first
attribute access so that ``import restate_lambda.protocol`` stays cheap; protobuf in
particular is only imported when a message is built or parsed (see :func:`pb`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from restate_lambda.protocol.errors import (
        JOURNAL_MISMATCH,
        PROTOCOL_VIOLATION,
        ProtocolError,
    )
    from restate_lambda.protocol.framing import (
        DEFAULT_MAX_MESSAGE_SIZE,
        HEADER_SIZE,
        REQUESTED_ACK,
        Frame,
        FrameDecoder,
        decode_all,
        decode_messages,
        encode,
        encode_header,
        encode_many,
        encode_raw,
    )
    from restate_lambda.protocol.ids import (
        AWAKEABLE_PREFIX,
        FIRST_AWAKEABLE_SIGNAL_INDEX,
        AwakeableId,
        DeploymentId,
        InvocationId,
        SubscriptionId,
        encode_awakeable_id,
        is_invocation_id,
    )
    from restate_lambda.protocol.lambda_envelope import (
        HttpRequest,
        HttpResponse,
        LambdaEnvelopeError,
        LambdaRequest,
        LambdaResponse,
        build_request,
        build_response,
        encode_envelope,
        parse_request,
        parse_response,
    )
    from restate_lambda.protocol.manifest import (
        EndpointManifest,
        Handler,
        InputPayload,
        ManifestError,
        OutputPayload,
        Service,
        decode_manifest,
        encode_manifest,
        validate_manifest,
    )
    from restate_lambda.protocol.messages import (
        COMPLETIONS_OF,
        Message,
        MessageType,
        allows_ack,
        describe,
        is_command,
        is_completable,
        is_control,
        is_custom,
        is_notification,
        message_class,
        message_type_of,
        parse,
        pb,
    )
    from restate_lambda.protocol.version import (
        MAX_PROTOCOL_VERSION,
        MIN_PROTOCOL_VERSION,
        SUPPORTED_MANIFEST_VERSIONS,
        SUPPORTED_PROTOCOL_VERSIONS,
        ProtocolVersion,
        invocation_content_type,
        manifest_accept_header,
        manifest_content_type,
        negotiate_invocation_content_type,
        negotiate_manifest_version,
        negotiate_protocol_version,
        parse_invocation_content_type,
        parse_manifest_content_type,
    )

_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": ("JOURNAL_MISMATCH", "PROTOCOL_VIOLATION", "ProtocolError"),
    "framing": (
        "DEFAULT_MAX_MESSAGE_SIZE",
        "HEADER_SIZE",
        "REQUESTED_ACK",
        "Frame",
        "FrameDecoder",
        "decode_all",
        "decode_messages",
        "encode",
        "encode_header",
        "encode_many",
        "encode_raw",
    ),
    "ids": (
        "AWAKEABLE_PREFIX",
        "FIRST_AWAKEABLE_SIGNAL_INDEX",
        "AwakeableId",
        "DeploymentId",
        "InvocationId",
        "SubscriptionId",
        "encode_awakeable_id",
        "is_invocation_id",
    ),
    "lambda_envelope": (
        "HttpRequest",
        "HttpResponse",
        "LambdaEnvelopeError",
        "LambdaRequest",
        "LambdaResponse",
        "build_request",
        "build_response",
        "encode_envelope",
        "parse_request",
        "parse_response",
    ),
    "manifest": (
        "EndpointManifest",
        "Handler",
        "InputPayload",
        "ManifestError",
        "OutputPayload",
        "Service",
        "decode_manifest",
        "encode_manifest",
        "validate_manifest",
    ),
    "messages": (
        "COMPLETIONS_OF",
        "Message",
        "MessageType",
        "allows_ack",
        "describe",
        "is_command",
        "is_completable",
        "is_control",
        "is_custom",
        "is_notification",
        "message_class",
        "message_type_of",
        "parse",
        "pb",
    ),
    "version": (
        "MAX_PROTOCOL_VERSION",
        "MIN_PROTOCOL_VERSION",
        "SUPPORTED_MANIFEST_VERSIONS",
        "SUPPORTED_PROTOCOL_VERSIONS",
        "ProtocolVersion",
        "invocation_content_type",
        "manifest_accept_header",
        "manifest_content_type",
        "negotiate_invocation_content_type",
        "negotiate_manifest_version",
        "negotiate_protocol_version",
        "parse_invocation_content_type",
        "parse_manifest_content_type",
    ),
}

_MODULE_OF: dict[str, str] = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "AWAKEABLE_PREFIX",
    "COMPLETIONS_OF",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FIRST_AWAKEABLE_SIGNAL_INDEX",
    "HEADER_SIZE",
    "JOURNAL_MISMATCH",
    "MAX_PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VIOLATION",
    "REQUESTED_ACK",
    "SUPPORTED_MANIFEST_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AwakeableId",
    "DeploymentId",
    "EndpointManifest",
    "Frame",
    "FrameDecoder",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "InputPayload",
    "InvocationId",
    "LambdaEnvelopeError",
    "LambdaRequest",
    "LambdaResponse",
    "ManifestError",
    "Message",
    "MessageType",
    "OutputPayload",
    "ProtocolError",
    "ProtocolVersion",
    "Service",
    "SubscriptionId",
    "allows_ack",
    "build_request",
    "build_response",
    "decode_all",
    "decode_manifest",
    "decode_messages",
    "describe",
    "encode",
    "encode_awakeable_id",
    "encode_envelope",
    "encode_header",
    "encode_manifest",
    "encode_many",
    "encode_raw",
    "invocation_content_type",
    "is_command",
    "is_completable",
    "is_control",
    "is_custom",
    "is_invocation_id",
    "is_notification",
    "manifest_accept_header",
    "manifest_content_type",
    "message_class",
    "message_type_of",
    "negotiate_invocation_content_type",
    "negotiate_manifest_version",
    "negotiate_protocol_version",
    "parse",
    "parse_invocation_content_type",
    "parse_manifest_content_type",
    "parse_request",
    "parse_response",
    "pb",
    "validate_manifest",
]


def __getattr__(name: str) -> object:
    """Load the submodule that defines ``name`` on first access (PEP 562)."""
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    __import__(f"{__name__}.{mod}")
    value = getattr(globals()[mod], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
