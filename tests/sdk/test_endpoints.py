"""Endpoints: discovery, bad input, the Lambda envelope and request identity."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest

from restate_lambda.protocol import decode_manifest
from restate_lambda.protocol.framing import decode_all
from restate_lambda.protocol.messages import MessageType, parse
from tests.sdk import services
from tests.sdk.frames import asgi_call, input_cmd, request, start

app = services.app
V6 = "application/vnd.restate.invocation.v6"
ACCEPT4 = "application/vnd.restate.endpointmanifest.v4+json"


def call(
    path: str,
    body: bytes = b"",
    ct: str | None = V6,
    method: str = "POST",
    http_version: str = "1.1",
    accept: str | None = None,
) -> tuple[int, bytes]:
    return asyncio.run(asgi_call(app, method, path, body, ct, http_version, accept))


def test_discovery_manifest_v4_request_response_over_http11() -> None:
    """HTTP/1.1 discovery announces REQUEST_RESPONSE with handler kinds and schemas."""
    status, body = call("/discover", method="GET", ct=None, accept=ACCEPT4)
    assert status == 200
    manifest = decode_manifest(body)
    assert manifest.protocol_mode == "REQUEST_RESPONSE"
    assert (manifest.min_protocol_version, manifest.max_protocol_version) == (5, 6)
    obj = manifest.service("Obj")
    assert obj is not None and obj.ty == "VIRTUAL_OBJECT"
    assert {h.name: h.ty for h in obj.handlers}["incr"] == "EXCLUSIVE"
    svc = manifest.service("Svc")
    assert svc is not None
    greet = next(h for h in svc.handlers if h.name == "greet")
    assert greet.input is not None and greet.input.json_schema == {"type": "string"}


def test_discovery_over_http2_is_bidi() -> None:
    """HTTP/2 discovery announces BIDI_STREAM."""
    status, body = call("/discover", method="GET", ct=None, accept=ACCEPT4, http_version="2")
    assert status == 200 and json.loads(body)["protocolMode"] == "BIDI_STREAM"


def test_discovery_unknown_version_is_415() -> None:
    """No common manifest version: 415."""
    status, _ = call(
        "/discover",
        method="GET",
        ct=None,
        accept="application/vnd.restate.endpointmanifest.v9+json",
    )
    assert status == 415


def test_wrong_content_type_is_415() -> None:
    """An invocation without the invocation content type: 415."""
    assert call("/invoke/Svc/greet", b"x", ct="application/json")[0] == 415


def test_unsupported_protocol_version_is_415() -> None:
    """Protocol versions outside 5..6: 415."""
    assert call("/invoke/Svc/greet", b"", ct="application/vnd.restate.invocation.v4")[0] == 415
    assert call("/invoke/Svc/greet", b"", ct="application/vnd.restate.invocation.v7")[0] == 415


def test_unknown_handler_is_404() -> None:
    """Unknown service or handler: 404."""
    assert call("/invoke/Nope/greet")[0] == 404
    assert call("/invoke/Svc/nope")[0] == 404
    assert call("/elsewhere")[0] == 404


def test_truncated_frame_gets_protocol_error_message() -> None:
    """A truncated frame: an ErrorMessage (571), never a crash."""
    body = request(start(1), input_cmd(b'"x"'))[:-3]
    status, raw = call("/invoke/Svc/greet", body)
    assert status == 200
    (frame,) = decode_all(raw)
    assert frame.type == MessageType.ERROR
    err: Any = parse(frame.type, frame.payload)
    assert err.code == 571


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x00\x00\x00\x00\x00\x05abc", b"garbage!!!"])
def test_garbage_bodies_get_error_message(body: bytes) -> None:
    """Empty or malformed bodies are answered with an ErrorMessage."""
    status, raw = call("/invoke/Svc/greet", body)
    assert status == 200
    assert [f.type for f in decode_all(raw)] == [MessageType.ERROR]


def test_health() -> None:
    """``/health`` answers 200."""
    assert call("/health", method="GET", ct=None)[0] == 200


def _lambda_event(path: str, body: bytes, headers: dict[str, str]) -> dict[str, object]:
    return {
        "path": path,
        "httpMethod": "POST" if body else "GET",
        "headers": headers,
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def test_lambda_envelope_invocation_and_discovery() -> None:
    """The Lambda handler answers Restate's envelope for invocations and discovery."""
    from restate_lambda.asgi import AsgiApp

    handler = AsgiApp(app.endpoint).lambda_handler
    resp = handler(
        _lambda_event(
            "/invoke/Svc/greet", request(start(1), input_cmd(b'"L"')), {"content-type": V6}
        ),
        None,
    )
    assert resp["statusCode"] == 200 and resp["isBase64Encoded"] is True
    frames = decode_all(base64.b64decode(resp["body"]))
    out: Any = parse(frames[0].type, frames[0].payload)
    assert out.value.content == b'"Hello, L!"'
    disc = handler(_lambda_event("/discover", b"", {"accept": ACCEPT4}), None)
    assert json.loads(base64.b64decode(disc["body"]))["protocolMode"] == "REQUEST_RESPONSE"
    assert handler({"nothing": 1}, None)["statusCode"] == 400


def test_request_identity() -> None:
    """With keys configured, only requests signed by the runtime's Ed25519 key pass."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    import restate_lambda as restate
    from restate_lambda.identity import _B58

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    n, digits = int.from_bytes(raw, "big"), ""
    while n:
        n, r = divmod(n, 58)
        digits = _B58[r] + digits
    signed_app = restate.app([services.svc], identity_keys=["publickeyv1_" + digits])

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def token(aud: str) -> str:
        now = int(time.time())  # noqa: TID251 - JWT claims are wall-clock seconds
        head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        claims = b64(json.dumps({"aud": aud, "iat": now, "nbf": now - 5, "exp": now + 60}).encode())
        return f"{head}.{claims}.{b64(key.sign(f'{head}.{claims}'.encode()))}"

    async def go(headers: list[tuple[bytes, bytes]]) -> int:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": "/discover",
            "headers": headers,
        }
        status = 0

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]

        await signed_app(scope, receive, send)
        return status

    ok = [
        (b"x-restate-signature-scheme", b"v1"),
        (b"x-restate-jwt-v1", token("/discover").encode()),
    ]
    assert asyncio.run(go(ok)) == 200
    bad = [(b"x-restate-signature-scheme", b"v1"), (b"x-restate-jwt-v1", token("/other").encode())]
    assert asyncio.run(go(bad)) == 401
    assert asyncio.run(go([])) == 401
    assert asyncio.run(go([(b"x-restate-signature-scheme", b"unsigned")])) == 401


def test_import_is_light() -> None:
    """Importing restate_lambda loads no AWS SDK, web framework, protobuf, msgspec or backend."""
    import subprocess
    import sys

    code = (
        "import sys, restate_lambda\n"
        "heavy = ('boto3', 'botocore', 'starlette', 'msgspec', 'google', 'backends', 'restate')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
