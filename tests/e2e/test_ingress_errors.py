"""Bad input at the ingress: each gets a clear status and JSON body, and the runtime keeps serving.

Expected values are restate-server 1.7.12's (see the module docstring of test_scenarios.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from tests.e2e.helpers import JSON, call, error_body
from tests.support import rawhttp
from tests.support.runtimes import Runtime

LIMIT = 32 * 1024 * 1024  # restate-server's ingress request-size-limit (32 MiB)
CHUNK = 1024 * 1024


def _json_string_body(total: int) -> Iterator[bytes]:
    """A JSON string of ``total`` bytes, generated in 1 MiB chunks (never held in memory)."""
    yield b'"'
    remaining = total - 2
    while remaining > 0:
        n = min(CHUNK, remaining)
        yield b"a" * n
        remaining -= n
    yield b'"'


async def _still_serving(ingress: httpx.AsyncClient) -> None:
    r = await call(ingress, "/Greeter/greet", "still here")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, still here!"


async def test_unknown_service_and_handler(ingress: httpx.AsyncClient) -> None:
    """Unknown service or handler: 404 from the ingress."""
    r = await call(ingress, "/NoSuchService/greet", "x")
    assert r.status_code == 404, r.text
    assert error_body(r) == {
        "code": 404,
        "message": "service 'NoSuchService' not found, make sure to register the service "
        "before calling it.",
        "source": "ingress",
    }
    assert r.headers["x-restate-error-source"] == "ingress"
    assert "x-restate-id" not in r.headers

    r = await call(ingress, "/Greeter/nope", "x")
    assert r.status_code == 404, r.text
    assert error_body(r) == {
        "code": 404,
        "message": "the service 'Greeter' exists, but the handler 'nope' was not found, check "
        "that the handler exists in the latest registered service version.",
        "source": "ingress",
    }


async def test_malformed_json_to_typed_handler(ingress: httpx.AsyncClient) -> None:
    """Malformed JSON is a terminal failure, never retried.

    restate-server passes it through (it checks only the content type) and the SDK fails to
    decode it: 500 with source ``invocation``. Rejecting it earlier with 400 is also acceptable.
    The test would time out if the runtime retried the invocation.
    """
    r = await ingress.post("/Greeter/greet", content=b"{bad", headers=JSON, timeout=20)
    assert r.status_code in (400, 500), r.text
    body = error_body(r)
    assert body["code"] == r.status_code
    if r.status_code == 500:  # what restate-server does
        assert body["source"] == "invocation"
        assert body["message"].startswith("Unable to parse an input argument."), body
        assert r.headers["x-restate-id"].startswith("inv_")
    await _still_serving(ingress)


async def test_content_type_checks(ingress: httpx.AsyncClient) -> None:
    """A JSON handler needs a content type; a handler without input accepts no body."""
    r = await ingress.post("/Greeter/greet", content=b'"x"')
    assert r.status_code == 400, r.text
    assert error_body(r) == {
        "code": 400,
        "source": "ingress",
        "message": "input validation error: Empty content-type",
    }

    r = await call(ingress, "/Counter/ct/get", None)  # JSON `null` to a handler without input
    assert r.status_code == 400, r.text
    body = error_body(r)
    assert body["code"] == 400
    assert body["source"] == "ingress"
    assert body["message"].startswith(
        "input validation error: Expected body and content-type to be empty"
    ), body


async def test_oversized_body_with_content_length(
    runtime: Runtime, ingress: httpx.AsyncClient
) -> None:
    """A body over 32 MiB, announced by Content-Length: 413 (restate-server answers in plain text
    ``length limit exceeded`` here; only the status is asserted)."""
    size = LIMIT + 1
    r = await asyncio.to_thread(
        rawhttp.post,
        f"{runtime.ingress_url}/Greeter/greet",
        _json_string_body(size),
        {**JSON, "content-length": str(size)},
    )
    assert r.status == 413, r.body
    await _still_serving(ingress)


async def test_oversized_body_chunked(runtime: Runtime, ingress: httpx.AsyncClient) -> None:
    """A chunked body that grows over 32 MiB: 413 with a JSON error body."""
    r = await asyncio.to_thread(
        rawhttp.post,
        f"{runtime.ingress_url}/Greeter/greet",
        _json_string_body(LIMIT + CHUNK),
        JSON,
        chunked=True,
    )
    assert r.status == 413, r.body
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert json.loads(r.body) == {
        "code": 413,
        "message": "cannot read body: LengthLimitError",
        "source": "ingress",
    }
    await _still_serving(ingress)


async def test_ingress_private_service_not_reachable(ingress: httpx.AsyncClient) -> None:
    """An ``ingress_private`` service: 400 "not public" from the ingress, yet callable from a
    handler."""
    r = await call(ingress, "/Internal/secret", "x")
    assert r.status_code == 400, r.text
    assert error_body(r) == {
        "code": 400,
        "message": "the invoked service is not public",
        "source": "ingress",
    }
    assert "x-restate-id" not in r.headers

    r = await call(ingress, "/Internal/secret/send", "x")
    assert r.status_code == 400, r.text
    assert error_body(r)["message"] == "the invoked service is not public"

    r = await call(ingress, "/Caller/call_private", "x")
    assert r.status_code == 200, r.text
    assert r.json() == "secret for x"


async def test_malformed_and_unknown_ids(ingress: httpx.AsyncClient) -> None:
    """Malformed invocation/awakeable ids: 400; a well-formed unknown invocation id: 404."""
    r = await ingress.get("/restate/invocation/garbage/attach")
    assert r.status_code == 400, r.text
    assert error_body(r) == {
        "code": 400,
        "source": "ingress",
        "message": "bad invocation id 'garbage': bad format",
    }

    unknown = "inv_1jl9KWPiVstV30o8YVIeAB3A60P5SKlaa5"
    r = await ingress.get(f"/restate/invocation/{unknown}/attach")
    assert r.status_code == 404, r.text
    assert error_body(r) == {"code": 404, "message": "not found", "source": "invocation"}
    r = await ingress.get(f"/restate/invocation/{unknown}/output")
    assert r.status_code == 404, r.text
    assert error_body(r)["code"] == 404

    r = await call(ingress, "/restate/awakeables/sign_garbage/resolve", "x")
    assert r.status_code == 400, r.text
    body = error_body(r)
    assert body["code"] == 400
    assert body["source"] == "ingress"
    assert body["message"].startswith("bad awakeable id 'sign_garbage'"), body


DEEP_JSON = "[" * 2000 + "]" * 2000


def _disconnect_mid_body(url: str, path: str) -> None:
    """Send headers announcing 1,000 bytes, then 10 bytes, then close the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
            "content-length: 1000\r\n\r\n".encode()
            + b'"aaaaaaaaa'
        )
        time.sleep(0.2)


async def test_hostile_input_is_4xx(
    runtime: Runtime, ingress: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    """Hostile input: 4xx (never 500), the runtime keeps serving; ours logs no traceback.

    Oversized ``?delay=``, an unparsable deployment URI, JSON nested 2,000 deep, a
    trailing-slash path with an encoded ``/``, and a client that disconnects mid-body.
    """
    log_start = runtime.process.log_path.stat().st_size if runtime.process.log_path.exists() else 0
    r = await ingress.post("/Greeter/greet/send?delay=" + "9" * 50 + "s", json="x")
    assert 400 <= r.status_code < 500, r.text

    r = await admin.post("/deployments", json={"uri": "http://[::1"})
    assert 400 <= r.status_code < 500, r.text

    for path in ("/query", "/deployments"):
        r = await admin.post(path, content=DEEP_JSON, headers=JSON)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    r = await ingress.post("/restate/lookup", content=DEEP_JSON, headers=JSON)
    if runtime.name == "restate-lambda":
        assert r.status_code == 400, r.text
        assert error_body(r)["code"] == 400
    else:  # restate-server 1.7.12 answers 500 here, with its Rust stack backtrace in the body
        assert r.status_code == 500, r.text

    r = await admin.get("/services/..%2F", follow_redirects=False)
    assert not r.headers.get("location", "").endswith("/.."), r.headers
    assert 400 <= r.status_code < 500, r.status_code

    for url, path in ((runtime.ingress_url, "/Greeter/greet"), (runtime.admin_url, "/deployments")):
        await asyncio.to_thread(_disconnect_mid_body, url, path)
    await _still_serving(ingress)

    if runtime.name == "restate-lambda":
        await asyncio.sleep(0.3)
        text = runtime.process.log_path.read_bytes()[log_start:].decode("utf-8", "replace")
        assert "Traceback" not in text, text
        assert " ERROR " not in text, text
