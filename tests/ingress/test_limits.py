"""Request bounds: body, header count and size, URL, key length; each a clear 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from infra.settings import AwsSettings, SettingsError, ingress_limits_from_env
from ingress.ingress_app import create_ingress_app
from ingress.limits import DEFAULT_MAX_BODY_BYTES, IngressLimits
from tests.ingress.fakes import FakeEngine

JSON = {"content-type": "application/json"}


@pytest.fixture
async def default_client() -> AsyncIterator[tuple[FakeEngine, httpx.AsyncClient]]:
    """The ingress with its default limits."""
    engine = FakeEngine()
    transport = httpx.ASGITransport(app=create_ingress_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield engine, client


def assert_error(r: httpx.Response, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status
    assert fragment in body["message"], body


async def test_body_limit_is_32_mib_by_default(
    default_client: tuple[FakeEngine, httpx.AsyncClient],
) -> None:
    engine, client = default_client
    assert DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
    r = await client.post(
        "/Greeter/greet",
        content=b"x",
        headers={**JSON, "content-length": str(DEFAULT_MAX_BODY_BYTES + 1)},
    )
    assert_error(r, 413, "length limit exceeded")
    assert engine.calls == []


async def test_too_many_headers(default_client: tuple[FakeEngine, httpx.AsyncClient]) -> None:
    engine, client = default_client
    headers = [(f"x-h{i}", "v") for i in range(101)] + [("content-type", "application/json")]
    r = await client.post("/Greeter/greet", content=b'"x"', headers=headers)
    assert_error(r, 431, "too many headers")
    assert engine.calls == []
    ok = [*headers[:90], ("content-type", "application/json")]
    assert (await client.post("/Greeter/greet", content=b'"x"', headers=ok)).status_code == 200


async def test_headers_too_large(default_client: tuple[FakeEngine, httpx.AsyncClient]) -> None:
    engine, client = default_client
    r = await client.post("/Greeter/greet", content=b'"x"', headers={**JSON, "x-big": "a" * 70_000})
    assert_error(r, 431, "exceed the limit of 65536 bytes")
    assert engine.calls == []


async def test_url_too_long(default_client: tuple[FakeEngine, httpx.AsyncClient]) -> None:
    _engine, client = default_client
    r = await client.post("/Greeter/greet?x=" + "a" * 9000, content=b'"x"', headers=JSON)
    assert_error(r, 414, "URL of")


@pytest.mark.parametrize(
    "path",
    [
        "/Counter/{key}/add",
        "/Counter/{key}/add/send",
        "/restate/call/Counter/{key}/add",
        "/restate/send/Counter/{key}/add",
        "/restate/workflow/Wf/{key}/output",
        "/restate/invocation/Counter/{key}/add/idem/output",
    ],
)
async def test_key_too_long(
    default_client: tuple[FakeEngine, httpx.AsyncClient], path: str
) -> None:
    engine, client = default_client
    key = "é" * 513  # 1,026 bytes of UTF-8
    method = "GET" if path.endswith("/output") else "POST"
    r = await client.request(method, path.format(key=key), content=b"1", headers=JSON)
    assert_error(r, 400, "exceeds the limit of 1024 bytes")
    assert engine.calls == [] and engine.sends == []
    r = await client.request(method, path.format(key="é" * 512), content=b"1", headers=JSON)
    assert r.status_code != 400, r.text


async def test_idempotency_key_too_long(
    default_client: tuple[FakeEngine, httpx.AsyncClient],
) -> None:
    engine, client = default_client
    r = await client.post(
        "/Greeter/greet/send", content=b'"x"', headers={**JSON, "idempotency-key": "k" * 1025}
    )
    assert_error(r, 400, "idempotency key of 1025 bytes")
    assert engine.sends == []


async def test_configured_limits() -> None:
    limits = IngressLimits(max_headers=10, max_key_bytes=3)  # httpx sends 7
    transport = httpx.ASGITransport(app=create_ingress_app(FakeEngine(), limits=limits))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        r = await client.post("/Counter/abcd/add", content=b"1", headers=JSON)
        assert_error(r, 400, "limit of 3 bytes")
        r = await client.post("/Counter/abc/add", content=b"1", headers=JSON)
        assert r.status_code == 200, r.text
        r = await client.post(
            "/Counter/abc/add",
            content=b"1",
            headers={**JSON, "a": "1", "b": "2", "c": "3", "d": "4"},
        )
        assert_error(r, 431, "the limit is 10")


def test_limits_from_settings() -> None:
    env = {
        "RESTATE_LAMBDA_STORAGE": "sqlite:///x",
        "RESTATE_LAMBDA_MAX_HEADERS": "7",
        "RESTATE_LAMBDA_MAX_HEADER_BYTES": "4096",
        "RESTATE_LAMBDA_MAX_URL_BYTES": "512",
        "RESTATE_LAMBDA_MAX_KEY_BYTES": "64",
        "RESTATE_LAMBDA_MAX_BODY_BYTES": "1000",
    }
    assert AwsSettings.from_env(env).ingress_limits() == IngressLimits(
        max_body_bytes=1000,
        max_headers=7,
        max_header_bytes=4096,
        max_url_bytes=512,
        max_key_bytes=64,
    )
    assert ingress_limits_from_env(env).max_key_bytes == 64
    assert ingress_limits_from_env({}) == IngressLimits()
    with pytest.raises(SettingsError, match="RESTATE_LAMBDA_MAX_KEY_BYTES must be positive"):
        ingress_limits_from_env({"RESTATE_LAMBDA_MAX_KEY_BYTES": "0"})


async def test_admin_body_limit(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/query", content=b"{" + b" " * (1024 * 1024 + 1), headers=JSON)
    assert r.status_code == 413, r.text
    assert "request body over" in r.json()["message"]
