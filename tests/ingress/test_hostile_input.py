"""Hostile input gets a 4xx JSON error and a log line without traceback, never a 500.

Each case was a 500 with a logged traceback (issue 7, item 13) before the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ingress.admin_app import create_admin_app
from ingress.durations import MAX_DELAY_MS, DurationError, parse_delay_ms
from ingress.ingress_app import create_ingress_app
from tests.ingress.fakes import FakeEngine

JSON = {"content-type": "application/json"}
DEEP = "[" * 2000 + "]" * 2000

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged with exception info, nor at ERROR or above."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


@pytest.mark.parametrize(
    "delay",
    ["9" * 50 + "s", "9" * 50, "P" + "9" * 50 + "D", "PT" + "9" * 30 + "S", "36501d", "1" * 5000],
)
async def test_huge_delay_is_400(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, delay: str
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await client.post(f"/Greeter/greet/send?delay={delay}", content=b'"x"', headers=JSON)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400
    assert body["message"].startswith("bad delay query parameter"), body
    no_tracebacks(caplog)


def test_delay_bounds() -> None:
    assert parse_delay_ms("36500d") == MAX_DELAY_MS
    assert parse_delay_ms("PT1S") == 1000
    with pytest.raises(DurationError):
        parse_delay_ms("36500d 1ms")


@pytest.mark.parametrize(
    "uri", ["http://[::1", "http://h:99999/", "http://h:x/", "ftp://h/", "//h"]
)
async def test_bad_deployment_uri_is_400(
    admin: httpx.AsyncClient, engine: FakeEngine, caplog: pytest.LogCaptureFixture, uri: str
) -> None:
    caplog.set_level(logging.DEBUG)
    before = dict(engine.deployments)
    r = await admin.post("/deployments", json={"uri": uri})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"Invalid deployment uri '{uri}'")
    assert engine.deployments == before
    no_tracebacks(caplog)


@pytest.mark.parametrize("path", ["/query", "/deployments", "/v4/query", "/v4/deployments"])
async def test_deep_json_to_admin_is_400(
    admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for body in (DEEP, '{"uri":' + DEEP + "}", '{"query":' + DEEP + "}"):
        r = await admin.post(path, content=body, headers=JSON)
        assert r.status_code == 400, r.text
        assert "nested too deeply" in r.json()["message"]
    no_tracebacks(caplog)


@pytest.mark.parametrize("mode", ["lookup", "attach", "output"])
async def test_deep_json_to_ingress_is_400(caplog: pytest.LogCaptureFixture, mode: str) -> None:
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=create_ingress_app(FakeEngine()))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        r = await client.post(f"/restate/{mode}", content=DEEP.encode(), headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "path",
    ["/services/..%2F", "/services/", "/deployments/", "/v4/services/..%2F", "/v4/", "/nope"],
)
async def test_admin_trailing_slash_not_redirected(admin: httpx.AsyncClient, path: str) -> None:
    """No redirect to a decoded path: a JSON 404."""
    r = await admin.get(path)
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers
    assert r.headers["content-type"] == "application/json"
    assert r.json()["message"] == "not found"


async def test_admin_wrong_method_is_json_405(admin: httpx.AsyncClient) -> None:
    r = await admin.put("/deployments")
    assert r.status_code == 405
    assert r.json()["message"] == "method PUT not allowed on /deployments"


async def test_ingress_trailing_slash_not_redirected(client: httpx.AsyncClient) -> None:
    r = await client.get("/restate/invocation/..%2F/")
    assert r.status_code in (400, 404), r.text
    assert "location" not in r.headers
    assert r.json()["code"] == r.status_code


async def _disconnect_mid_body(app: ASGIApp, method: str, path: str) -> list[dict[str, Any]]:
    """Drive ``app`` with a request whose client goes away after the first body chunk."""
    messages = [
        {"type": "http.request", "body": b'{"uri": "http://', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 9070),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("which", "path"),
    [("ingress", "/Greeter/greet"), ("ingress", "/restate/lookup"), ("admin", "/deployments")],
)
async def test_client_disconnect_mid_body_logged_quietly(
    caplog: pytest.LogCaptureFixture, which: str, path: str
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = FakeEngine()
    app = create_ingress_app(engine) if which == "ingress" else create_admin_app(engine)
    sent = await _disconnect_mid_body(app, "POST", path)
    no_tracebacks(caplog)
    assert any("client disconnected" in r.getMessage() for r in caplog.records)
    assert engine.calls == [] and len(engine.deployments) == 1
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert 400 <= start["status"] < 500
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert "message" in json.loads(body)
