"""Private services and handlers are unreachable by every ingress route (fake engine).

Each route that reaches an existing invocation (attach, output, lookup, awakeable completion)
answers 400 ``the invoked service is not public`` for an invocation of a private service or
handler, as a call to that service does; built-in signal indexes are refused in awakeable ids.
"""

from __future__ import annotations

import httpx
import pytest

from restate_lambda.protocol.ids import AwakeableId, InvocationId
from tests.ingress.fakes import (
    INV_A,
    INV_PRIVATE_HANDLER,
    INV_PRIVATE_SERVICE,
    INV_UNKNOWN,
    FakeEngine,
)

NOT_PUBLIC = {"code": 400, "message": "the invoked service is not public", "source": "ingress"}
JSON = {"content-type": "application/json"}


def awakeable(invocation_id: str, index: int, legacy: bool = False) -> str:
    """The awakeable id of signal ``index`` of ``invocation_id``."""
    return str(AwakeableId(InvocationId.parse(invocation_id), index, legacy=legacy))


@pytest.mark.parametrize("inv", [INV_PRIVATE_HANDLER, INV_PRIVATE_SERVICE])
@pytest.mark.parametrize(
    "path",
    [
        "/restate/invocation/{inv}/attach",
        "/restate/invocation/{inv}/output",
        "/restate/attach/{inv}",
        "/restate/output/{inv}",
    ],
)
async def test_read_by_id_refused(client: httpx.AsyncClient, path: str, inv: str) -> None:
    """Attach/output by invocation id of a private target: 400, no outcome leaks."""
    r = await client.get(path.format(inv=inv))
    assert r.status_code == 400, r.text
    assert r.json() == NOT_PUBLIC
    assert "private" not in r.text


@pytest.mark.parametrize("mode", ["attach", "output", "lookup"])
async def test_json_target_refused(client: httpx.AsyncClient, mode: str) -> None:
    """``POST /restate/attach|output|lookup`` naming a private invocation: 400."""
    bodies = [
        {"target": "invocation", "invocationId": INV_PRIVATE_SERVICE},
        {"target": "workflow", "workflowName": "HiddenWf", "workflowKey": "h1"},
        {
            "target": "idempotentInvocation",
            "service": "Greeter",
            "handler": "secret",
            "idempotencyKey": "done",
        },
    ]
    for body in bodies:
        r = await client.post(f"/restate/{mode}", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json() == NOT_PUBLIC


@pytest.mark.parametrize("mode", ["attach", "output"])
async def test_workflow_and_idempotent_routes_refused(client: httpx.AsyncClient, mode: str) -> None:
    """Legacy workflow and idempotency-key routes of private targets: 400."""
    for path in (
        f"/restate/workflow/HiddenWf/h1/{mode}",
        f"/restate/workflow/HiddenWf/never-started/{mode}",
        f"/restate/invocation/Greeter/secret/done/{mode}",
        f"/restate/invocation/Hidden/run/anything/{mode}",
    ):
        r = await client.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == NOT_PUBLIC


async def test_public_routes_still_answer(client: httpx.AsyncClient) -> None:
    """The check does not get in the way of public or unknown invocations."""
    assert (await client.get(f"/restate/output/{INV_A}")).status_code == 200
    assert (await client.get("/restate/workflow/Wf/w1/attach")).status_code == 200
    assert (await client.get(f"/restate/output/{INV_UNKNOWN}")).status_code == 404
    r = await client.post("/restate/lookup", json={"target": "invocation", "invocationId": INV_A})
    assert r.json() == {"invocationId": INV_A}


@pytest.mark.parametrize("action", ["resolve", "reject"])
async def test_awakeable_of_private_invocation_refused(
    client: httpx.AsyncClient, engine: FakeEngine, action: str
) -> None:
    """Completing an awakeable of a private invocation: 400, nothing delivered."""
    for inv in (INV_PRIVATE_HANDLER, INV_PRIVATE_SERVICE):
        awk = awakeable(inv, 17)
        r = await client.post(f"/restate/awakeables/{awk}/{action}", content=b'"x"', headers=JSON)
        assert r.status_code == 400, r.text
        assert r.json() == NOT_PUBLIC
    assert engine.awakeables == {}


@pytest.mark.parametrize("index", [0, 1, 2, 16])
@pytest.mark.parametrize("legacy", [False, True])
async def test_builtin_signal_index_refused(
    client: httpx.AsyncClient, engine: FakeEngine, index: int, legacy: bool
) -> None:
    """``sign_1``/``prom_1`` ids naming a built-in signal (1 = CANCEL): 400, not delivered.

    restate-server accepts them and cancels the invocation; we refuse them on purpose.
    """
    awk = awakeable(INV_A, index, legacy)
    for action in ("resolve", "reject"):
        r = await client.post(f"/restate/a/{awk}/{action}", content=b'"x"', headers=JSON)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["code"] == 400
        assert body["source"] == "ingress"
        assert f"signal index {index} is reserved for built-in signals" in body["message"]
    assert engine.awakeables == {}


async def test_first_awakeable_index_accepted(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """Index 17, the first an SDK allocates, is delivered."""
    awk = awakeable(INV_A, 17)
    r = await client.post(f"/restate/awakeables/{awk}/resolve", content=b'"ok"', headers=JSON)
    assert r.status_code == 202, r.text
    assert engine.awakeables == {awk: b'"ok"'}
