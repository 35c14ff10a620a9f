"""Attach/output/lookup and awakeables through the ingress app."""

from __future__ import annotations

import base64

import httpx
import pytest

from invoker.api import Target
from tests.ingress.fakes import INV_A, INV_B, INV_RUNNING, INV_UNKNOWN, FakeEngine
from tests.ingress.test_ingress_invoke import assert_error

AWAKEABLE = "sign_1" + base64.urlsafe_b64encode(bytes(range(28))).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/restate/invocation/{INV_A}/attach",
        f"/restate/invocation/{INV_A}/output",
        f"/restate/attach/{INV_A}",
        f"/restate/output/{INV_A}",
        "/restate/workflow/Wf/w1/attach",
        "/restate/workflow/Wf/w1/output",
        "/restate/invocation/Greeter/greet/done/attach",
        "/restate/invocation/Greeter/greet/done/output",
        "/restate/invocation/Counter/k1/add/done/output",
    ],
)
async def test_read_completed(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.content == b'"done"'
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-restate-id"] == INV_A
    assert r.headers["idempotency-expires"] == "2026-09-21T14:13:20.123+00:00"


async def test_read_failure_carries_metadata(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/restate/output/{INV_B}")
    body = assert_error(r, 418, "invocation")
    assert body["metadata"] == {"a": "b"}
    assert r.headers["x-restate-id"] == INV_B


async def test_output_running_is_470(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/restate/invocation/{INV_RUNNING}/output")
    assert "not completed" in str(assert_error(r, 470)["message"])


async def test_unknown_invocation_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/restate/output/{INV_UNKNOWN}"), 404)
    assert_error(await client.get("/restate/workflow/Wf/nope/output"), 404)
    assert_error(await client.get("/restate/invocation/Greeter/greet/nope/output"), 404)
    r = await client.get(f"/restate/attach/{INV_UNKNOWN}")
    assert_error(r, 404, "invocation")
    assert r.headers["x-restate-id"] == INV_UNKNOWN


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [
        ("inv_bad", "unrecognized codec version"),
        ("nope", "bad format"),
        ("inv_1abc", "bad length"),
        ("inv_1" + "!" * 33, "bad format"),
    ],
)
async def test_malformed_invocation_id_400(
    client: httpx.AsyncClient, bad_id: str, reason: str
) -> None:
    for path in (f"/restate/invocation/{bad_id}/output", f"/restate/attach/{bad_id}"):
        message = str(assert_error(await client.get(path), 400)["message"])
        assert message == f"bad invocation id '{bad_id}': {reason}"


async def test_read_requires_get(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(f"/restate/output/{INV_A}"), 405)
    assert_error(await client.get("/restate/lookup"), 405)
    assert_error(await client.get(f"/restate/invocation/{INV_A}/nope"), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"target": "invocation", "invocationId": INV_A},
        {"target": "workflow", "workflowName": "Wf", "workflowKey": "w1"},
        {
            "target": "idempotentInvocation",
            "service": "Greeter",
            "handler": "greet",
            "idempotencyKey": "done",
        },
    ],
)
async def test_json_target_forms(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    for mode in ("attach", "output"):
        r = await client.post(f"/restate/{mode}", json=body)
        assert r.status_code == 200
        assert r.content == b'"done"'
    r = await client.post("/restate/lookup", json=body)
    assert r.status_code == 200
    assert r.json() == {"invocationId": INV_A}


async def test_lookup_idempotent_object(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    target = Target("Counter", "add", key="k1")
    engine.idempotent[(target, "ik")] = INV_B
    body = {
        "target": "idempotentInvocation",
        "service": "Counter",
        "key": "k1",
        "handler": "add",
        "idempotencyKey": "ik",
    }
    r = await client.post("/restate/lookup", json=body)
    assert r.json() == {"invocationId": INV_B}


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"target":"zzz"}',
        b'{"target":"workflow","workflowName":"Wf"}',
        b'{"target":"invocation","invocationId":"inv_bad"}',
        b'{"target":"idempotentInvocation","service":"S","handler":"h","idempotencyKey":"k","key":1}',
    ],
)
async def test_json_target_bad_body_400(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post(
        "/restate/lookup", content=raw, headers={"content-type": "application/json"}
    )
    body = assert_error(r, 400)
    assert "Stack backtrace" not in str(body["message"])


async def test_awakeable_resolve_and_reject(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post(f"/restate/awakeables/{AWAKEABLE}/resolve", content=b'{"v":1}')
    assert r.status_code == 202
    assert r.content == b""
    assert engine.awakeables[AWAKEABLE] == b'{"v":1}'
    legacy = "prom_1" + AWAKEABLE.removeprefix("sign_1")
    r = await client.post(f"/restate/a/{legacy}/reject", content="boom ☃".encode())
    assert r.status_code == 202
    assert engine.awakeables[legacy] == "boom ☃"


@pytest.mark.parametrize("bad", ["foo", "sign_2abc", "sign_1abcdefghijklmnopqrstuvwxyz", "sign_1"])
async def test_awakeable_bad_id_400(client: httpx.AsyncClient, bad: str) -> None:
    r = await client.post(f"/restate/awakeables/{bad}/resolve", content=b"1")
    assert str(assert_error(r, 400)["message"]).startswith(f"bad awakeable id '{bad}'")


async def test_awakeable_errors(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/restate/awakeables/{AWAKEABLE}/resolve"), 405)
    assert_error(await client.post(f"/restate/awakeables/{AWAKEABLE}/complete"), 404)
    r = await client.post(f"/restate/a/{AWAKEABLE}/resolve", content=b"x" * 2000)
    assert_error(r, 413)
