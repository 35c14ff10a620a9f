"""The admin API refuses cross-site requests, rebound Hosts, non-JSON bodies and strangers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from infra.dev_server import DevOptions, admin_security, serve
from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity, is_loopback
from tests.ingress.fakes import FakeEngine

TOKEN = "s3cret-token"
REGISTER = b'{"uri": "http://attacker.example:9080/"}'


def client_for(engine: FakeEngine, security: AdminSecurity | None, host: str) -> httpx.AsyncClient:
    """A client whose requests carry ``Host: host``."""
    app = create_admin_app(engine, security=security)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


@pytest.fixture
async def local() -> AsyncIterator[tuple[FakeEngine, httpx.AsyncClient]]:
    """The admin app as ``restate-lambda dev`` serves it on 127.0.0.1:9070 (no token)."""
    engine = FakeEngine()
    async with client_for(engine, AdminSecurity.for_bind("127.0.0.1", None), "127.0.0.1:9070") as c:
        yield engine, c


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[FakeEngine, httpx.AsyncClient]]:
    """The same with a token configured."""
    engine = FakeEngine()
    security = AdminSecurity.for_bind("127.0.0.1", TOKEN)
    async with client_for(engine, security, "127.0.0.1:9070") as c:
        yield engine, c


def assert_refused(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["restate_code"] is None
    message: str = body["message"]
    return message


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_simple_cross_site_post_refused(
    local: tuple[FakeEngine, httpx.AsyncClient], content_type: str | None
) -> None:
    """The reproduced hole: a form/`fetch(no-cors)` POST re-registering a deployment."""
    engine, client = local
    headers = {"content-type": content_type} if content_type else {}
    r = await client.post("/deployments", content=REGISTER, headers=headers)
    assert "application/json" in assert_refused(r, 415)
    assert len(engine.deployments) == 1


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:8080", "http://localhost:9070"]
)
async def test_foreign_origin_refused(
    local: tuple[FakeEngine, httpx.AsyncClient], origin: str
) -> None:
    """Any Origin but the admin's own (same host and port as ``Host``): 403."""
    engine, client = local
    for method, path in (
        ("POST", "/deployments"),
        ("PATCH", "/invocations/x/cancel"),
        ("DELETE", "/deployments/dp_1"),
        ("GET", "/deployments"),
    ):
        r = await client.request(
            method,
            path,
            content=REGISTER if method == "POST" else b"",
            headers={"origin": origin, "content-type": "application/json"},
        )
        assert "Origin" in assert_refused(r, 403), (method, path)
    assert len(engine.deployments) == 1 and engine.managed == []


async def test_own_origin_and_no_origin_allowed(
    local: tuple[FakeEngine, httpx.AsyncClient],
) -> None:
    engine, client = local
    for headers in ({"origin": "http://127.0.0.1:9070"}, {}):
        r = await client.post(
            "/deployments",
            content=REGISTER,
            headers={**headers, "content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code in (200, 201), r.text
    assert len(engine.deployments) == 2


async def test_sec_fetch_site_cross_site_refused(
    local: tuple[FakeEngine, httpx.AsyncClient],
) -> None:
    _engine, client = local
    r = await client.post(
        "/deployments",
        content=REGISTER,
        headers={"content-type": "application/json", "sec-fetch-site": "cross-site"},
    )
    assert_refused(r, 403)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9070", "192.168.1.5:9070", ""])
async def test_rebound_host_refused(host: str) -> None:
    """DNS rebinding: the browser sends the attacker's name as Host. Reads are refused too."""
    engine = FakeEngine()
    security = AdminSecurity.for_bind("127.0.0.1", None)
    async with client_for(engine, security, "127.0.0.1:9070") as client:
        for method, path in (("GET", "/deployments"), ("POST", "/query")):
            r = await client.request(
                method, path, headers={"host": host}, json={"query": "select 1"}
            )
            assert "Host" in assert_refused(r, 403)


@pytest.mark.parametrize("host", ["localhost:9070", "[::1]:9070", "127.0.0.2", "devbox.lan:9070"])
async def test_loopback_and_configured_hosts_allowed(host: str) -> None:
    security = AdminSecurity.for_bind("127.0.0.1", None, ["devbox.lan"])
    async with client_for(FakeEngine(), security, host) as client:
        assert (await client.get("/deployments")).status_code == 200


async def test_token_required(guarded: tuple[FakeEngine, httpx.AsyncClient]) -> None:
    engine, client = guarded
    r = await client.get("/deployments")
    assert "bearer token" in assert_refused(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    for value in ("Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"):
        r = await client.get("/deployments", headers={"authorization": value})
        assert_refused(r, 401)
    r = await client.post("/deployments", json={"uri": "http://h/"})
    assert_refused(r, 401)
    assert len(engine.deployments) == 1
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/v4/deployments", headers=auth)).status_code == 200
    r = await client.post("/deployments", json={"uri": "http://h/"}, headers=auth)
    assert r.status_code == 201, r.text


async def test_health_open_with_token(guarded: tuple[FakeEngine, httpx.AsyncClient]) -> None:
    _engine, client = guarded
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/v4/health")).status_code == 200
    assert (await client.get("/version")).status_code == 401


def test_non_loopback_bind_needs_token() -> None:
    with pytest.raises(ValueError, match="not a loopback address: give --admin-token"):
        AdminSecurity.for_bind("0.0.0.0", None)
    with pytest.raises(ValueError):
        AdminSecurity.for_bind("192.168.1.5", "")
    open_to_lan = AdminSecurity.for_bind("0.0.0.0", TOKEN)
    assert open_to_lan.token == TOKEN and open_to_lan.allowed_hosts is None
    assert AdminSecurity.for_bind("10.0.0.7", TOKEN).allowed_hosts == frozenset({"10.0.0.7"})
    assert AdminSecurity.for_bind("localhost", None).allowed_hosts == frozenset({"localhost"})


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.evil.com", ""):
        assert not is_loopback(host), host


async def test_dev_server_refuses_open_admin(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``restate-lambda dev`` on a non-loopback address without a token does not start."""
    monkeypatch.delenv("RESTATE_LAMBDA_ADMIN_TOKEN", raising=False)
    options = DevOptions(host="0.0.0.0", data_dir=tmp_path / "data", ingress_port=1, admin_port=1)
    with pytest.raises(ValueError) as info:
        await serve(options)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "data").exists()  # refused before touching anything
    monkeypatch.setenv("RESTATE_LAMBDA_ADMIN_TOKEN", TOKEN)
    assert admin_security(options).token == TOKEN


def test_own_cli_sends_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """``restate-lambda deployments list`` sends RESTATE_LAMBDA_ADMIN_TOKEN as a bearer token."""
    from typer.testing import CliRunner

    from infra.cli import app

    seen: list[dict[str, str]] = []

    def fake_request(method: str, url: str, **kwargs: object) -> httpx.Response:
        seen.append(dict(kwargs.get("headers") or {}))  # type: ignore[call-overload]
        return httpx.Response(200, json={"deployments": []})

    monkeypatch.setattr(httpx, "request", fake_request)
    monkeypatch.setenv("RESTATE_LAMBDA_ADMIN_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["deployments", "list"])
    assert result.exit_code == 0, result.output
    assert seen == [{"authorization": f"Bearer {TOKEN}", "accept": "application/json"}]
