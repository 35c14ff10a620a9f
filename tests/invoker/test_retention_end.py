"""Once an invocation's retention ends it is gone to clients, even while its record is stored.

On DynamoDB a completed invocation that left only its record expires through the table's TTL,
which deletes it within days of its expiry; until then the item is still read. Restate forgets
an idempotent invocation when its retention ends: attach and output answer 404, and the same
idempotency key starts a new invocation. Tested on a memory store that claims item expiry and,
like DynamoDB Local, never deletes anything (the sweeper leaves such records to the store).
"""

from __future__ import annotations

from datetime import timedelta

import restate_lambda
from invoker import keys
from invoker.ids import idempotent_invocation_id
from restate_lambda.testing import Harness
from tests.support.memory_stores import ExpiringMemoryBackend

svc = restate_lambda.Service("Kept")
counter = restate_lambda.VirtualObject("KeptCounter")
RUNS: list[str] = []


@svc.handler()
async def greet(ctx: restate_lambda.Context, name: str) -> str:
    RUNS.append(name)
    return f"Hello, {name} #{len(RUNS)}!"


@counter.handler()
async def add(ctx: restate_lambda.ObjectContext, n: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


DAY = timedelta(days=1)


async def test_a_repeated_idempotency_key_after_retention_starts_a_new_invocation() -> None:
    RUNS.clear()
    backend = ExpiringMemoryBackend()
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc, counter]))
        headers = {"idempotency-key": "once", "content-type": "application/json"}
        first = await h.ingress.post("/Kept/greet", json="Ada", headers=headers)
        assert (first.status_code, first.json()) == (200, "Hello, Ada #1!")
        inv_id = first.headers["x-restate-id"]
        again = await h.ingress.post("/Kept/greet", json="Ada", headers=headers)
        assert (again.json(), again.headers["x-restate-id"]) == ("Hello, Ada #1!", inv_id)

        await h.advance(DAY + timedelta(minutes=1))
        stored = await backend.get(keys.inv(inv_id), keys.META)
        assert stored is not None  # the store has not deleted it (DynamoDB may take days)
        for action in ("output", "attach"):
            gone = await h.ingress.get(f"/restate/invocation/{inv_id}/{action}")
            assert gone.status_code == 404, gone.text
        by_key = await h.ingress.get("/restate/invocation/Kept/greet/once/output")
        assert by_key.status_code == 404, by_key.text

        renewed = await h.ingress.post("/Kept/greet", json="Ada", headers=headers)
        assert (renewed.status_code, renewed.json()) == (200, "Hello, Ada #2!")
        assert renewed.headers["x-restate-id"] == inv_id  # the same key, the same id
        assert RUNS == ["Ada", "Ada"]
        output = await h.ingress.get(f"/restate/invocation/{inv_id}/output")
        assert output.json() == "Hello, Ada #2!"


async def test_a_send_and_an_object_call_after_retention_run_again() -> None:
    backend = ExpiringMemoryBackend()
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc, counter]))
        headers = {"idempotency-key": "k", "content-type": "application/json"}
        sent = await h.ingress.post("/KeptCounter/c/add/send", json=5, headers=headers)
        assert sent.json()["status"] == "Accepted"
        inv_id = sent.json()["invocationId"]
        assert await h.result(inv_id) == 5
        repeat = await h.ingress.post("/KeptCounter/c/add/send", json=5, headers=headers)
        assert repeat.json()["status"] == "PreviouslyAccepted"

        await h.advance(DAY + timedelta(minutes=1))
        renewed = await h.ingress.post("/KeptCounter/c/add/send", json=5, headers=headers)
        assert renewed.json() == {"invocationId": inv_id, "status": "Accepted"}
        assert await h.result(inv_id) == 10  # ran again, on the state the first one left
        called = await h.ingress.post("/KeptCounter/c/add", json=1, headers=headers)
        assert called.json() == 10  # within the new retention: the stored outcome


async def _listed(h: Harness, inv_id: str) -> dict[str, bool]:
    """Where ``inv_id`` shows: SQL's sys_invocation and sys_journal, the admin API's list."""
    json_rows = {"accept": "application/json"}
    sql = await h.admin.post(
        "/query", json={"query": "SELECT id FROM sys_invocation"}, headers=json_rows
    )
    journal = await h.admin.post(
        "/query",
        json={"query": f"SELECT id FROM sys_journal WHERE id = '{inv_id}'"},
        headers=json_rows,
    )
    listed = await h.admin.get("/invocations?all=true&limit=1000")
    described = await h.admin.get(f"/invocations/{inv_id}")
    return {
        "sql": inv_id in [r["id"] for r in sql.json()["rows"]],
        "journal": bool(journal.json()["rows"]),
        "list": inv_id in [r["id"] for r in listed.json()["invocations"]],
        "describe": described.status_code == 200,
    }


async def test_introspection_forgets_an_invocation_past_its_retention() -> None:
    """SQL, the admin list and an invocation's description agree with the ingress: past its
    retention an invocation is gone, though the store still holds its record."""
    backend = ExpiringMemoryBackend()
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc, counter]))
        headers = {"idempotency-key": "seen", "content-type": "application/json"}
        first = await h.ingress.post("/Kept/greet", json="Bo", headers=headers)
        inv_id = first.headers["x-restate-id"]
        everywhere = {"sql": True, "journal": True, "list": True, "describe": True}
        assert await _listed(h, inv_id) == everywhere

        await h.advance(DAY + timedelta(minutes=1))
        assert await backend.get(keys.inv(inv_id), keys.META) is not None
        assert await _listed(h, inv_id) == dict.fromkeys(everywhere, False)
        # A LIMIT pushed down to the scan still finds the invocations that are not gone, also
        # when the scan meets the gone one first (ids of idempotent calls are chosen here).
        fresh_key = next(
            k
            for k in (f"fresh-{n}" for n in range(1000))
            if idempotent_invocation_id("Kept", "greet", None, k) > inv_id
        )
        fresh = await h.ingress.post(
            "/Kept/greet", json="Cy", headers={**headers, "idempotency-key": fresh_key}
        )
        fresh_id = fresh.headers["x-restate-id"]
        assert fresh_id > inv_id
        for limit in (1, 2):
            limited = await h.admin.post(
                "/query",
                json={"query": f"SELECT id FROM sys_invocation LIMIT {limit}"},
                headers={"accept": "application/json"},
            )
            assert limited.json()["rows"] == [{"id": fresh_id}]
