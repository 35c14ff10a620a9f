"""Calls and sends through the ingress app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from invoker.api import Target
from tests.ingress.fakes import FakeEngine

JSON = {"content-type": "application/json"}


def assert_error(r: httpx.Response, status: int, source: str = "ingress") -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status
    assert body["source"] == source
    assert isinstance(body["message"], str)
    assert r.headers["x-restate-error-source"] == source
    return dict(body)


async def test_call_service_returns_output_and_id(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    r = await client.post("/Greeter/greet", content=b'"bob"', headers=JSON)
    assert r.status_code == 200
    assert r.content == b'"bob"'
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-restate-id"].startswith("inv_1")
    assert "idempotency-expires" not in r.headers
    request = engine.calls[0]
    assert request.target == Target("Greeter", "greet")
    assert request.content_type == "application/json"
    assert request.idempotency_key is None


async def test_new_call_api_and_get(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/restate/call/Greeter/greet", content=b'"a"', headers=JSON)
    assert r.status_code == 200
    r = await client.get("/Greeter/greet")
    assert r.status_code == 200
    assert engine.calls[-1].body == b""


async def test_object_key_is_url_decoded(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/Counter/a%2Fb%20c/add", content=b"1", headers=JSON)
    assert r.status_code == 200
    assert engine.calls[0].target == Target("Counter", "add", key="a/b c")
    r = await client.post("/restate/call/Counter/k%3F/add", content=b"1", headers=JSON)
    assert engine.calls[1].target == Target("Counter", "add", key="k?")


async def test_empty_result_is_empty_200(client: httpx.AsyncClient) -> None:
    r = await client.post("/Greeter/noin")
    assert r.status_code == 200
    assert r.content == b""
    assert "content-type" not in r.headers
    assert r.headers["x-restate-id"]


async def test_headers_forwarded_except_idempotency(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    r = await client.post(
        "/Greeter/greet",
        content=b'"x"',
        headers={**JSON, "idempotency-key": "k1", "x-custom": "v"},
    )
    assert r.status_code == 200
    assert r.headers["idempotency-expires"] == "2026-09-21T14:13:20.000+00:00"
    request = engine.calls[0]
    assert request.idempotency_key == "k1"
    names = dict(request.headers)
    assert names["x-custom"] == "v"
    assert names["x-restate-ingress-path"] == "/Greeter/greet"
    assert "idempotency-key" not in names
    assert "host" not in names
    assert "content-length" not in names


async def test_terminal_failure_maps_code(client: httpx.AsyncClient) -> None:
    r = await client.post("/Greeter/fail", content=b'"x"', headers=JSON)
    body = assert_error(r, 418, "invocation")
    assert body["message"] == "nope"
    assert r.headers["x-restate-id"].startswith("inv_1")


async def test_workflow_rerun_is_409_with_id(client: httpx.AsyncClient) -> None:
    r = await client.post("/Wf/w1/run", content=b'"x"', headers=JSON)
    assert_error(r, 409, "invocation")
    assert r.headers["x-restate-id"]


async def test_send_accepted_and_previously_accepted(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    headers = {**JSON, "idempotency-key": "s1"}
    r = await client.post("/Counter/k1/add/send", content=b"1", headers=headers)
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "Accepted"
    assert r.headers["x-restate-id"] == body["invocationId"]
    r = await client.post("/restate/send/Counter/k1/add", content=b"1", headers=headers)
    assert r.json() == {"invocationId": body["invocationId"], "status": "PreviouslyAccepted"}
    r = await client.post("/Greeter/greet/send", content=b'"x"', headers=JSON)
    assert r.status_code == 202
    assert engine.sends[-1].target == Target("Greeter", "greet")


@pytest.mark.parametrize(
    ("delay", "ms"),
    [("10s", 10_000), ("1m30s", 90_000), ("500ms", 500), ("PT10S", 10_000), ("PT1M", 60_000)],
)
async def test_send_delay(
    client: httpx.AsyncClient, engine: FakeEngine, delay: str, ms: int
) -> None:
    r = await client.post(
        "/Greeter/greet/send", params={"delay": delay}, content=b'"x"', headers=JSON
    )
    assert r.status_code == 202
    assert r.json()["executionTime"] == "2025-11-25T13:24:21.123000000Z"
    assert engine.sends[-1].delay_ms == ms


@pytest.mark.parametrize("delay", ["abc", "", "10", "P", "PT", "-5s", "10 parsecs"])
async def test_bad_delay_is_400(client: httpx.AsyncClient, delay: str) -> None:
    r = await client.post(
        "/Greeter/greet/send", params={"delay": delay}, content=b'"x"', headers=JSON
    )
    body = assert_error(r, 400)
    assert "bad delay query parameter" in str(body["message"])


async def test_delay_on_call_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Greeter/greet?delay=10s", content=b'"x"', headers=JSON)
    assert "only with sends" in str(assert_error(r, 400)["message"])


async def test_unknown_service_and_handler_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/Nope/greet", content=b'"x"', headers=JSON)
    assert "service 'Nope' not found" in str(assert_error(r, 404)["message"])
    r = await client.post("/Greeter/nope", content=b'"x"', headers=JSON)
    assert_error(r, 404)
    r = await client.post("/restate/call/Nope/x", content=b'"x"', headers=JSON)
    assert_error(r, 404)


async def test_private_handler_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Greeter/secret", content=b'"x"', headers=JSON)
    assert_error(r, 400)


@pytest.mark.parametrize(
    "path",
    ["/", "/Greeter", "/Greeter/k/greet", "/Counter/add", "/a/b/c/d/e", "/Counter/k/add/x"],
)
async def test_bad_paths_400(client: httpx.AsyncClient, path: str) -> None:
    r = await client.post(path, content=b'"x"', headers=JSON)
    assert_error(r, 400)


async def test_new_api_bad_path(client: httpx.AsyncClient) -> None:
    r = await client.post("/restate/call/Greeter", content=b"")
    assert_error(r, 400)
    r = await client.get("/restate/unknown")
    assert_error(r, 404)


async def test_method_not_allowed(client: httpx.AsyncClient) -> None:
    r = await client.put("/Greeter/greet", content=b'"x"', headers=JSON)
    assert_error(r, 405)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "fragment"),
    [
        ("/Greeter/noin", b"", "application/json", "Expected body and content-type to be empty"),
        ("/Greeter/noin", b"abc", None, "content-type 'None'"),
        ("/Greeter/greet", b'"x"', None, "Empty content-type"),
        ("/Greeter/greet", b'"x"', "text/plain", "does not match 'application/json'"),
        ("/Greeter/greet", b"", "application/json", "Empty body not allowed"),
        ("/Greeter/greet", b"", "application/x-www-form-urlencoded", "does not match"),
    ],
)
async def test_content_type_mismatch_400(
    client: httpx.AsyncClient,
    engine: FakeEngine,
    path: str,
    body: bytes,
    content_type: str | None,
    fragment: str,
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = await client.post(path, content=body, headers=headers)
    message = str(assert_error(r, 400)["message"])
    assert message.startswith("input validation error: ")
    assert fragment in message
    assert engine.calls == []


async def test_content_type_with_charset_and_case_ok(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/Greeter/greet",
        content=b'"x"',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[" * 1000, b'"a" "b"'])
async def test_malformed_json_refused_before_the_engine(
    client: httpx.AsyncClient, engine: FakeEngine, body: bytes
) -> None:
    """restate-server passes malformed JSON on and the SDK fails the invocation (terminal 500);
    we answer 400 before creating one (tests/e2e/test_ingress_errors.py accepts both)."""
    r = await client.post("/Greeter/greet", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("input validation error: malformed JSON body")
    assert engine.calls == []


async def test_oversized_body_413(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/Greeter/greet", content=b'"' + b"a" * 2000 + b'"', headers=JSON)
    assert_error(r, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"a" * 400

    r = await client.post("/Greeter/greet", content=chunks(), headers=JSON)
    assert_error(r, 413)
    assert engine.calls == []


async def test_unexpected_exception_500_without_traceback(
    client: httpx.AsyncClient, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.raise_on_call = RuntimeError("secret internals")
    r = await client.post("/Greeter/greet", content=b'"x"', headers=JSON)
    body = assert_error(r, 500)
    assert body["message"] == "internal server error"
    assert "secret" not in r.text
    assert "Traceback" not in r.text
    assert any("secret internals" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/restate/health")
    assert r.status_code == 200


async def test_ingress_credentials_not_forwarded(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """SigV4 or JWT credentials meant for the ingress never reach the journal or a handler."""
    r = await client.post(
        "/Greeter/greet",
        content=b'"x"',
        headers={
            **JSON,
            "authorization": "Bearer eyJhbGciOi.secret.jwt",
            "proxy-authorization": "Basic c2VjcmV0",
            "x-amz-security-token": "session-token",
            "x-amz-date": "20260101T000000Z",
        },
    )
    assert r.status_code == 200
    names = dict(engine.calls[0].headers)
    for dropped in ("authorization", "proxy-authorization", "x-amz-security-token"):
        assert dropped not in names
    assert names["x-amz-date"] == "20260101T000000Z"
    assert "secret" not in repr(engine.calls[0].headers)
