"""AWS Lambda adapter: Restate's Lambda envelope in, the proxy-response envelope out.

The event arrives as a dict, so no JSON library is needed; the body is base64 (and may be
zstd-compressed when the runtime says ``content-encoding: zstd``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from restate_lambda.exchange import Reply, request_response, text_reply

if TYPE_CHECKING:
    from restate_lambda.endpoint_config import EndpointConfig


def _decode(event: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    http = (event.get("requestContext") or {}).get("http") or {}
    path = event.get("path") or event.get("rawPath") or http.get("path")
    if not path:
        raise ValueError("Lambda event has neither 'path' nor 'rawPath'")
    method = str(event.get("httpMethod") or http.get("method") or "POST").upper()
    headers: dict[str, str] = {}
    for source in (event.get("multiValueHeaders") or {}, event.get("headers") or {}):
        for k, v in source.items():
            if v is not None:
                headers[k.lower()] = ", ".join(v) if isinstance(v, list) else str(v)
    raw = event.get("body") or ""
    body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    if "zstd" in headers.get("content-encoding", ""):
        body = _zstd().decompress(body)
    return method, str(path), headers, body


def _zstd() -> Any:
    try:
        import compression.zstd as zstd  # type: ignore[import-not-found]
    except ImportError:
        import backports.zstd as zstd  # type: ignore[import-not-found]
    return zstd


def encode_reply(reply: Reply) -> dict[str, Any]:
    """The Lambda response envelope of ``reply``."""
    status, headers, body = reply
    return {
        "statusCode": status,
        "headers": dict(headers),
        "isBase64Encoded": True,
        "body": base64.b64encode(body).decode("ascii"),
    }


async def handle_event(
    endpoint: EndpointConfig,
    event: dict[str, Any],
    remaining_ms: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Answer one Lambda invocation (discovery, health or a request-response invocation).

    ``remaining_ms``: the Lambda context's ``get_remaining_time_in_millis`` (voluntary
    suspension before the deadline).
    """
    try:
        method, path, headers, body = _decode(event)
    except (ValueError, binascii.Error, AttributeError, TypeError) as e:
        return encode_reply(text_reply(400, f"invalid Lambda event: {e}"))
    reply = await request_response(endpoint, method, path, headers, body, remaining_ms=remaining_ms)
    return encode_reply(reply)
