"""The same privacy rules against the real engine in process (memory backend, our SDK).

Each hole of issue 9 reproduced end to end: a private service's result read through the
invocation id its caller leaked, a private workflow's output, an awakeable of a private
handler resolved from outside, and built-in signal 1 (CANCEL) sent through an awakeable id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from infra.testing import TestEnvironment
from infra.testing import test_environment as runtime_environment
from restate_lambda.protocol.ids import AwakeableId
from tests.ingress import private_app

JSON = {"content-type": "application/json"}
NOT_PUBLIC = {"code": 400, "message": "the invoked service is not public", "source": "ingress"}


@pytest.fixture
async def env() -> AsyncIterator[TestEnvironment]:
    """A runtime with :mod:`tests.ingress.private_app` registered."""
    async with runtime_environment() as environment:
        await environment.mount("private", private_app.app)
        yield environment


async def post(env: TestEnvironment, path: str, body: object = None) -> httpx.Response:
    """POST a JSON body (none when ``body`` is None)."""
    if body is None:
        return await env.ingress.post(path)
    return await env.ingress.post(path, content=json.dumps(body).encode(), headers=JSON)


async def test_private_service_output_by_leaked_id(env: TestEnvironment) -> None:
    """A caller leaks the id of its send to a private service: attach/output refuse it."""
    r = await post(env, "/Caller/send_private", "bob")
    assert r.status_code == 200, r.text
    child = r.json()
    await env.settle()
    assert (await env.engine.output(child)).value == b'"secret for bob"'  # it did complete
    for path in (
        f"/restate/invocation/{child}/output",
        f"/restate/invocation/{child}/attach",
        f"/restate/output/{child}",
        f"/restate/attach/{child}",
    ):
        r = await env.ingress.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == NOT_PUBLIC
        assert "secret for bob" not in r.text
    r = await env.ingress.post(
        "/restate/output", json={"target": "invocation", "invocationId": child}
    )
    assert r.json() == NOT_PUBLIC


async def test_private_workflow_output(env: TestEnvironment) -> None:
    """A private workflow started from a handler: its output and attach routes refuse."""
    r = await post(env, "/Caller/start_private_workflow", "w1")
    assert r.status_code == 200, r.text
    await env.settle()
    for path in ("/restate/workflow/Hidden/w1/output", "/restate/workflow/Hidden/w1/attach"):
        r = await env.ingress.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == NOT_PUBLIC
    body = {"target": "workflow", "workflowName": "Hidden", "workflowKey": "w1"}
    for mode in ("output", "attach", "lookup"):
        r = await env.ingress.post(f"/restate/{mode}", json=body)
        assert r.json() == NOT_PUBLIC, mode
    r = await post(env, "/Hidden/w1/run", "x")  # and a direct call, as before
    assert r.json() == NOT_PUBLIC


async def test_awakeable_of_private_handler(env: TestEnvironment) -> None:
    """The awakeable of a private handler cannot be completed from the ingress."""
    r = await post(env, "/Vault/v1/open_wait")
    assert r.status_code == 200, r.text
    waiting = r.json()
    await env.settle()
    awk = (await post(env, "/Vault/v1/awakeable_id")).json()
    assert awk.startswith("sign_1")
    for action in ("resolve", "reject"):
        r = await env.ingress.post(
            f"/restate/awakeables/{awk}/{action}", content=b'"forged"', headers=JSON
        )
        assert r.status_code == 400, r.text
        assert r.json() == NOT_PUBLIC
    await env.settle()
    row = await env.engine.describe_invocation(waiting)
    assert row["status"] == "suspended", row  # still waiting: nothing was delivered


async def test_cancel_signal_through_awakeable_id_refused(env: TestEnvironment) -> None:
    """``sign_1`` built from a public invocation's id with index 1 (CANCEL): 400, and the
    invocation is not cancelled; its real awakeable (index 17) still completes it."""
    r = await env.ingress.post("/Awaiter/a1/wait_public/send")
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocationId"]
    await env.settle()
    real = (await post(env, "/Awaiter/a1/published")).json()
    parsed = AwakeableId.parse(real)
    assert str(parsed.invocation_id) == invocation_id
    assert parsed.signal_index >= 17
    cancel = str(AwakeableId(parsed.invocation_id, 1))
    r = await env.ingress.post(f"/restate/awakeables/{cancel}/resolve")
    assert r.status_code == 400, r.text
    assert "signal index 1 is reserved for built-in signals" in r.json()["message"]
    await env.settle()
    assert (await env.engine.describe_invocation(invocation_id))["status"] == "suspended"

    r = await env.ingress.post(
        f"/restate/awakeables/{real}/resolve", content=b'"yes"', headers=JSON
    )
    assert r.status_code == 202, r.text
    await env.settle()
    r = await env.ingress.get(f"/restate/invocation/{invocation_id}/output")
    assert r.status_code == 200, r.text
    assert r.json() == "got yes"
