"""The JSON envelope Restate uses to call handlers through AWS Lambda ``Invoke``.

Request (API Gateway v1 proxy shape, what Restate sends)::

    {"path": "/invoke/Svc/handler", "httpMethod": "POST", "headers": {...},
     "body": "<base64>", "isBase64Encoded": true}

Response::

    {"statusCode": 200, "headers": {...}, "body": "<base64>", "isBase64Encoded": true}

The parse side also accepts API Gateway v2 events (``rawPath``,
``requestContext.http.method``) and multi-valued headers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

HeaderValue = str | list[str]


class LambdaEnvelopeError(ValueError):
    """The Lambda payload is not a valid request/response envelope."""


class LambdaRequest(msgspec.Struct, rename="camel"):
    """Runtime -> function payload (API Gateway v1 proxy request)."""

    path: str
    http_method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = True


class LambdaResponse(msgspec.Struct, rename="camel"):
    """Function -> runtime payload (API Gateway proxy response)."""

    status_code: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = True


class HttpRequest(msgspec.Struct, frozen=True):
    """A decoded request: what the handler endpoint should see."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpResponse(msgspec.Struct, frozen=True):
    """A decoded response."""

    status: int
    headers: dict[str, str]
    body: bytes


# --- loose input shapes (v1 + v2 events) --------------------------------------------------


class _V2Http(msgspec.Struct, rename="camel"):
    method: str | None = None
    path: str | None = None


class _V2Context(msgspec.Struct, rename="camel"):
    http: _V2Http | None = None


class _AnyRequest(msgspec.Struct, rename="camel"):
    path: str | None = None
    raw_path: str | None = None
    http_method: str | None = None
    request_context: _V2Context | None = None
    headers: dict[str, HeaderValue | None] | None = None
    multi_value_headers: dict[str, list[str]] | None = None
    body: str | None = None
    is_base64_encoded: bool = False


class _AnyResponse(msgspec.Struct, rename="camel"):
    status_code: int
    headers: dict[str, HeaderValue | None] | None = None
    multi_value_headers: dict[str, list[str]] | None = None
    body: str | None = None
    is_base64_encoded: bool = False


# --- helpers ------------------------------------------------------------------------------


def _merge_headers(
    headers: dict[str, HeaderValue | None] | None,
    multi: dict[str, list[str]] | None,
) -> dict[str, str]:
    out: dict[str, str] = {}
    for source in (multi or {}, headers or {}):
        for k, v in source.items():
            if v is None:
                continue
            out[k.lower()] = ", ".join(v) if isinstance(v, list) else v
    return out


def _decode_body(body: str | None, is_base64: bool) -> bytes:
    if body is None:
        return b""
    if not is_base64:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as e:
        raise LambdaEnvelopeError(f"body is not valid base64: {e}") from None


def _load(data: bytes | str | dict[str, Any], typ: type[Any]) -> Any:
    try:
        if isinstance(data, dict):
            return msgspec.convert(data, type=typ)
        return msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as e:
        raise LambdaEnvelopeError(f"invalid Lambda envelope: {e}") from None
    except msgspec.DecodeError as e:
        raise LambdaEnvelopeError(f"Lambda envelope is not valid JSON: {e}") from None


def build_request(
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> LambdaRequest:
    """Envelope for invoking ``path`` with ``body`` (always base64-encoded)."""
    return LambdaRequest(
        path=path,
        http_method=method,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=base64.b64encode(body).decode("ascii"),
        is_base64_encoded=True,
    )


def parse_request(data: bytes | str | dict[str, Any]) -> HttpRequest:
    """Decode a Lambda event (API Gateway v1 or v2 shape) into an :class:`HttpRequest`."""
    raw: _AnyRequest = _load(data, _AnyRequest)
    http = raw.request_context.http if raw.request_context else None
    path = raw.path or raw.raw_path or (http.path if http else None)
    if not path:
        raise LambdaEnvelopeError("Lambda event has neither 'path' nor 'rawPath'")
    method = raw.http_method or (http.method if http else None) or "POST"
    return HttpRequest(
        method=method.upper(),
        path=path,
        headers=_merge_headers(raw.headers, raw.multi_value_headers),
        body=_decode_body(raw.body, raw.is_base64_encoded),
    )


def build_response(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> LambdaResponse:
    """Envelope for answering the runtime (body always base64-encoded)."""
    return LambdaResponse(
        status_code=status,
        headers=dict(headers or {}),
        body=base64.b64encode(body).decode("ascii"),
        is_base64_encoded=True,
    )


def parse_response(data: bytes | str | dict[str, Any]) -> HttpResponse:
    """Decode a function's Lambda answer into an :class:`HttpResponse`."""
    raw: _AnyResponse = _load(data, _AnyResponse)
    return HttpResponse(
        status=raw.status_code,
        headers=_merge_headers(raw.headers, raw.multi_value_headers),
        body=_decode_body(raw.body, raw.is_base64_encoded),
    )


def encode_envelope(envelope: LambdaRequest | LambdaResponse) -> bytes:
    """JSON bytes of an envelope (the Lambda ``Invoke`` payload)."""
    return msgspec.json.encode(envelope)


def to_dict(envelope: LambdaRequest | LambdaResponse) -> dict[str, Any]:
    """The envelope as a plain dict (what a Python Lambda handler returns)."""
    out: dict[str, Any] = msgspec.to_builtins(envelope)
    return out
