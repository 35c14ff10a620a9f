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
