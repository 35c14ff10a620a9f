"""The admin API through httpx's ASGI transport."""

from __future__ import annotations

import httpx
import pytest

from ingress import admin_query
from tests.ingress.fakes import DEPLOYMENT_ID, INV_A, INV_RUNNING, INV_UNKNOWN, FakeEngine

PREFIXES = ["", "/v2", "/v3", "/v4"]


def assert_admin_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["restate_code"] is None
    return str(body["message"])


async def test_health_and_version(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/health")
    assert r.status_code == 200
    r = await admin.get("/version")
    body = r.json()
    assert body["version"].startswith("1.7.")
    assert body["min_admin_api_version"] == 2
    assert body["max_admin_api_version"] == 4
    assert body["ingress_endpoint"] == "http://127.0.0.1:18080/"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_services(admin: httpx.AsyncClient, prefix: str) -> None:
    r = await admin.get(f"{prefix}/services")
    services = {s["name"]: s for s in r.json()["services"]}
    assert set(services) == {"Greeter", "Counter", "Wf", "Hidden", "HiddenWf"}
    assert services["Hidden"]["public"] is False
    counter = services["Counter"]
    assert counter["ty"] == "VirtualObject"
    assert counter["revision"] == 1
    assert counter["public"] is True
    assert counter["deployment_id"] == DEPLOYMENT_ID
    assert counter["retry_policy"]["on_max_attempts"] == "Pause"
    assert counter["handlers"][0]["ty"] == "Exclusive"
    assert "workflow_completion_retention" in services["Wf"]
    r = await admin.get(f"{prefix}/services/Greeter")
    assert r.json()["name"] == "Greeter"
    r = await admin.get(f"{prefix}/services/Greeter/handlers")
    assert {h["name"] for h in r.json()["handlers"]} >= {"greet", "noin"}
    r = await admin.get(f"{prefix}/services/Greeter/handlers/noin")
    assert r.json()["input_description"] == "none"


async def test_service_errors(admin: httpx.AsyncClient) -> None:
    message = assert_admin_error(await admin.get("/services/Nope"), 404)
    assert "Nope" in message
    assert_admin_error(await admin.get("/v4/services/Nope/handlers"), 404)
    assert_admin_error(await admin.get("/services/Greeter/handlers/zz"), 404)


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_deployments(admin: httpx.AsyncClient, prefix: str) -> None:
    r = await admin.get(f"{prefix}/deployments")
    (deployment,) = r.json()["deployments"]
    assert deployment["id"] == DEPLOYMENT_ID
    assert deployment["protocol_type"] == "RequestResponse"
    assert deployment["http_version"] == "HTTP/1.1"
    assert deployment["created_at"] == "2025-11-25T13:23:54.107000000Z"
    assert deployment["services"][0] == {"name": "Greeter", "revision": 1}
    r = await admin.get(f"{prefix}/deployments/{DEPLOYMENT_ID}")
    detail = r.json()
    assert detail["uri"] == "http://127.0.0.1:9080/"
    assert detail["services"][0]["handlers"]


async def test_deployment_errors(admin: httpx.AsyncClient, engine: FakeEngine) -> None:
    assert_admin_error(await admin.get("/deployments/dp_unknown"), 404)
    r = await admin.delete(f"/deployments/{DEPLOYMENT_ID}?force=false")
    assert_admin_error(r, 400)  # restate-server: 501; we answer no 5xx on purpose
    r = await admin.delete(f"/deployments/{DEPLOYMENT_ID}?force=maybe")
    assert_admin_error(r, 400)
    r = await admin.delete(f"/v4/deployments/{DEPLOYMENT_ID}")
    assert r.status_code == 202
    assert engine.deployments == {}


async def test_register_created_then_existing(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/v4/deployments", json={"uri": "http://new:9080/", "force": True})
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("dp_")
    assert r.headers["location"] == f"deployments/{body['id']}"
    assert body["services"][0]["name"] == "Greeter"
    r = await admin.post("/deployments", json={"uri": "http://127.0.0.1:9080/"})
    assert r.status_code == 200
    assert r.json()["id"] == DEPLOYMENT_ID


async def test_register_lambda(admin: httpx.AsyncClient, engine: FakeEngine) -> None:
    arn = "arn:aws:lambda:eu-central-1:123:function:f:1"
    r = await admin.post("/deployments", json={"arn": arn, "assume_role_arn": "arn:role"})
    assert r.status_code == 201
    r = await admin.get("/deployments")
    lam = next(d for d in r.json()["deployments"] if d.get("arn") == arn)
    assert lam["assume_role_arn"] == "arn:role"
    assert "uri" not in lam


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{", 400),
        (b"[]", 422),
        (b'{"foo":1}', 422),
        (b'{"uri":"http://a","arn":"arn:x"}', 422),
        (b'{"uri":"http://a","force":"yes"}', 422),
        (b'{"uri":"http://a","additional_headers":{"a":1}}', 422),
        (b'{"uri":"http://conflict"}', 409),
    ],
)
async def test_register_errors(admin: httpx.AsyncClient, raw: bytes, status: int) -> None:
    r = await admin.post("/deployments", content=raw, headers={"content-type": "application/json"})
    assert_admin_error(r, status)


@pytest.mark.parametrize(
    ("action", "status"),
    [("cancel", 202), ("kill", 200), ("purge", 200), ("pause", 200), ("resume", 200)],
)
async def test_manage_invocation(
    admin: httpx.AsyncClient, engine: FakeEngine, action: str, status: int
) -> None:
    r = await admin.patch(f"/v4/invocations/{INV_RUNNING}/{action}")
    assert r.status_code == status
    assert r.content == b""
    assert engine.managed == [(INV_RUNNING, action)]


async def test_manage_invocation_errors(admin: httpx.AsyncClient) -> None:
    message = assert_admin_error(await admin.patch(f"/invocations/{INV_UNKNOWN}/cancel"), 404)
    assert INV_UNKNOWN in message
    message = assert_admin_error(await admin.patch("/invocations/inv_1abc/cancel"), 400)
    assert message == "The request field 'invocation_id' is invalid. Reason: bad length"
    assert_admin_error(await admin.patch(f"/invocations/{INV_A}/frobnicate"), 404)


async def test_legacy_delete_invocation(admin: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await admin.delete(f"/invocations/{INV_A}?mode=purge")
    assert r.status_code == 202
    assert engine.managed == [(INV_A, "purge")]
    assert_admin_error(await admin.delete(f"/invocations/{INV_A}?mode=zap"), 400)


async def test_query_state_without_sql_extra(
    admin: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without datafusion, the CLI's ``kv get`` query is still answered (JSON, hex values)."""
    monkeypatch.setattr(admin_query, "sql_available", lambda: False)
    engine.state[("Counter", "it's")] = {"b": b"\x00\xff", "a": b"1"}
    query = "select key, value from state where service_name = 'Counter' and service_key = 'k1' ;"
    r = await admin.post("/v4/query", json={"query": query}, headers={"accept": "application/json"})
    assert r.json() == {"rows": [{"key": "count", "value": "3432"}]}
    query = "SELECT key, value FROM state WHERE service_name = 'Counter' AND service_key = 'it''s'"
    r = await admin.post("/query", json={"query": query})
    assert r.json() == {"rows": [{"key": "a", "value": "31"}, {"key": "b", "value": "00ff"}]}
    r = await admin.post("/query", json={"query": "SELECT COUNT(1) FROM sys_invocation"})
    assert r.status_code == 501
    assert "'sql' extra" in r.json()["message"] and r.json()["code"] == 501


async def test_query_body_errors(admin: httpx.AsyncClient) -> None:
    assert_admin_error(await admin.post("/query", json={"q": 1}), 422)
    assert_admin_error(await admin.post("/query", json={"query": 7}), 422)


async def test_modify_state(admin: httpx.AsyncClient, engine: FakeEngine) -> None:
    """``POST /services/{svc}/state`` (``restate kv clear``/``edit``): 202, bytes as int arrays."""
    body = {"object_key": "k9", "new_state": {"a": [49, 50]}, "version": None}
    r = await admin.post("/v4/services/Counter/state", json=body)
    assert r.status_code == 202, r.text
    assert engine.state[("Counter", "k9")] == {"a": b"12"}
    bad = {"object_key": "k9", "new_state": {"a": [300]}}
    assert_admin_error(await admin.post("/services/Counter/state", json=bad), 422)
    assert_admin_error(await admin.post("/services/Counter/state", json={"new_state": {}}), 422)
    missing = {"object_key": "k", "new_state": {}}
    assert_admin_error(await admin.post("/services/Nope/state", json=missing), 404)


async def test_unexpected_error_is_generic_500(
    admin: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> list[dict[str, object]]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(engine, "list_services", broken)
    r = await admin.get("/services")
    assert assert_admin_error(r, 500) == "internal server error"
    assert "secret" not in r.text
