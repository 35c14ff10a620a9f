"""The engine with official restate-sdk handlers in process, time driven by a manual clock."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from infra.testing import TestEnvironment
from tests.invoker import sdk_app

JSON = {"content-type": "application/json"}


async def post(env: TestEnvironment, path: str, body: object = None, **headers: str):  # type: ignore[no-untyped-def]
    return await env.ingress.post(
        path,
        content=b"" if body is None else json.dumps(body).encode(),
        headers={**(JSON if body is not None else {}), **headers},
    )


class TestServices:
    async def test_greet(self, env: TestEnvironment) -> None:
        """A plain service call returns the handler's JSON output and the invocation id."""
        r = await post(env, "/Greeter/greet", "bob")
        assert 200 == r.status_code
        assert "Hello, bob!" == r.json()
        assert r.headers["x-restate-id"].startswith("inv_1")

    async def test_no_output_is_empty_200(self, env: TestEnvironment) -> None:
        """A handler returning None answers 200 with an empty body."""
        r = await post(env, "/Greeter/nothing")
        assert 200 == r.status_code
        assert b"" == r.content

    async def test_unknown_service(self, env: TestEnvironment) -> None:
        """An unknown service is a 404 JSON error."""
        r = await post(env, "/Nope/greet", "x")
        assert 404 == r.status_code
        assert 404 == r.json()["code"]

    async def test_private_service(self, env: TestEnvironment) -> None:
        """An ingress-private handler cannot be called from the ingress."""
        r = await post(env, "/Private/secret")
        assert r.status_code in (400, 403, 404)


class TestState:
    async def test_counter_concurrent_adds(self, env: TestEnvironment) -> None:
        """40 concurrent adds on one key serialize: final 40, every response distinct."""
        results = await asyncio.gather(*(post(env, "/Counter/k/add", 1) for _ in range(40)))
        values = sorted(r.json() for r in results)
        assert list(range(1, 41)) == values
        assert 40 == (await post(env, "/Counter/k/get")).json()

    async def test_state_isolated_per_key(self, env: TestEnvironment) -> None:
        """State belongs to one key."""
        await post(env, "/Counter/a/add", 5)
        await post(env, "/Counter/b/add", 7)
        assert 5 == (await post(env, "/Counter/a/get")).json()
        assert 7 == (await post(env, "/Counter/b/get")).json()
        await post(env, "/Counter/a/reset")
        assert 0 == (await post(env, "/Counter/a/get")).json()
        assert {} == await env.engine.get_state("Counter", "a")

    async def test_shared_read_while_exclusive_suspended(self, env: TestEnvironment) -> None:
        """A shared handler runs while an exclusive one holds the key (suspended on a sleep)."""
        await post(env, "/Counter/s/add", 1)
        r = await post(env, "/Counter/s/slow_add/send", 10)
        assert 202 == r.status_code
        await env.settle()
        assert 1 == (await post(env, "/Counter/s/get")).json()
        queued = await post(env, "/Counter/s/add/send", 100)
        await env.settle()
        assert 1 == (await post(env, "/Counter/s/get")).json()  # queued behind the lock
        await env.advance(timedelta(seconds=6))
        assert 111 == (await post(env, "/Counter/s/get")).json()
        out = await env.ingress.get(f"/restate/invocation/{queued.json()['invocationId']}/output")
        assert 111 == out.json()


class TestSteps:
    async def test_steps_run_once(self, env: TestEnvironment) -> None:
        """Each ctx.run step executes exactly once."""
        r = await post(env, "/Steps/run", 5)
        assert [1, 1, 1, 1, 1] == r.json()
        assert all(sdk_app.calls[f"step-{i}"] == 1 for i in range(5))

    async def test_retry_then_success(self, env: TestEnvironment) -> None:
        """A retryable failure is retried with backoff; the completed step does not re-run."""
        r = await post(env, "/Steps/flaky/send", 2)
        inv_id = r.json()["invocationId"]
        await env.settle()
        assert 1 == sdk_app.calls["flaky-attempt"]
        await env.advance(timedelta(milliseconds=500))
        assert 2 == sdk_app.calls["flaky-attempt"]
        await env.advance(timedelta(milliseconds=1000))
        assert 3 == sdk_app.calls["flaky-attempt"]
        assert 1 == sdk_app.calls["flaky-before"]
        out = await env.ingress.get(f"/restate/invocation/{inv_id}/output")
        assert "ok" == out.json()

    async def test_terminal_error(self, env: TestEnvironment) -> None:
        """A TerminalError's code and message reach the client and it is not retried."""
        r = await post(env, "/Steps/terminal")
        assert 418 == r.status_code
        assert {"code": 418, "message": "nope"}.items() <= r.json().items()
        await env.advance(timedelta(seconds=10))
        assert 1 == sdk_app.calls["terminal"]

    async def test_sleep(self, env: TestEnvironment) -> None:
        """A durable sleep suspends until the clock passes its wake-up time."""
        r = await post(env, "/Steps/sleepy/send", 60)
        inv_id = r.json()["invocationId"]
        await env.settle()
        assert "sleepy-after" not in sdk_app.calls
        out = await env.ingress.get(f"/restate/invocation/{inv_id}/output")
        assert 470 == out.status_code
        await env.advance(timedelta(seconds=61))
        assert 1 == sdk_app.calls["sleepy-after"]
        assert 1 == sdk_app.calls["sleepy-before"]
        assert "woke" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()

    async def test_call_send_delayed_send(self, env: TestEnvironment) -> None:
        """Calls return results; sends run detached; delayed sends wait for their time."""
        r = await post(env, "/Steps/caller", "ann")
        assert "called: Hello, ann!" == r.json()
        await env.settle()
        assert 1 == sdk_app.calls["nothing"]
        assert 0 == (await post(env, "/Counter/sent/get")).json()
        await env.advance(timedelta(seconds=11))
        assert 1 == (await post(env, "/Counter/sent/get")).json()


class TestAwakeablesAndWorkflows:
    async def test_awakeable_resolve(self, env: TestEnvironment) -> None:
        """An awakeable resolved over HTTP completes the waiting handler."""
        r = await post(env, "/Awaiter/a1/wait/send")
        inv_id = r.json()["invocationId"]
        await env.settle()
        awk = (await post(env, "/Awaiter/a1/awakeable_id")).json()
        assert awk.startswith("sign_1")
        res = await env.ingress.post(
            f"/restate/awakeables/{awk}/resolve", content=b'"yes"', headers=JSON
        )
        assert res.status_code in (200, 202)
        await env.settle()
        assert "got yes" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()

    async def test_awakeable_reject(self, env: TestEnvironment) -> None:
        """A rejected awakeable fails the handler with the reason."""
        r = await post(env, "/Awaiter/a2/wait/send")
        inv_id = r.json()["invocationId"]
        await env.settle()
        awk = (await post(env, "/Awaiter/a2/awakeable_id")).json()
        await env.ingress.post(f"/restate/awakeables/{awk}/reject", content=b"denied")
        await env.settle()
        out = await env.ingress.get(f"/restate/invocation/{inv_id}/output")
        assert 500 == out.status_code
        assert "denied" in out.json()["message"]

    async def test_workflow_promise_attach_output(self, env: TestEnvironment) -> None:
        """A workflow waits on a promise resolved by its shared handler; attach gets the result."""
        r = await post(env, "/Signup/w1/signup_run/send", "a@b.c")
        assert 202 == r.status_code
        again = await post(env, "/Signup/w1/signup_run/send", "a@b.c")
        assert "PreviouslyAccepted" == again.json()["status"]
        assert r.json()["invocationId"] == again.json()["invocationId"]
        await env.settle()
        out = await env.ingress.get("/restate/workflow/Signup/w1/output")
        assert 470 == out.status_code
        attach = asyncio.ensure_future(env.ingress.get("/restate/workflow/Signup/w1/attach"))
        await post(env, "/Signup/w1/verify", "1234")
        await env.settle()
        assert "a@b.c verified with 1234" == (await attach).json()
        blocking = await post(env, "/Signup/w1/signup_run", "a@b.c")
        assert 409 == blocking.status_code

    async def test_idempotency_key(self, env: TestEnvironment) -> None:
        """The same idempotency key runs once and answers the same response and id."""
        a = await post(env, "/Counter/idem/add", 1, **{"idempotency-key": "k1"})
        b = await post(env, "/Counter/idem/add", 1, **{"idempotency-key": "k1"})
        assert 1 == a.json() == b.json()
        assert a.headers["x-restate-id"] == b.headers["x-restate-id"]
        assert 1 == (await post(env, "/Counter/idem/get")).json()

    async def test_send_then_attach(self, env: TestEnvironment) -> None:
        """A sent invocation can be attached to by id."""
        r = await post(env, "/Greeter/greet/send", "zed")
        inv_id = r.json()["invocationId"]
        attached = await env.ingress.get(f"/restate/invocation/{inv_id}/attach")
        assert "Hello, zed!" == attached.json()

    async def test_cancel(self, env: TestEnvironment) -> None:
        """Cancel surfaces as a TerminalError in the handler, which compensates; outcome 409."""
        r = await post(env, "/Steps/cancellable/send")
        inv_id = r.json()["invocationId"]
        await env.settle()
        c = await env.admin.patch(f"/invocations/{inv_id}/cancel")
        assert 202 == c.status_code
        await env.settle()
        out = await env.ingress.get(f"/restate/invocation/{inv_id}/output")
        assert 409 == out.status_code
        assert 1 == sdk_app.calls["compensated"]


class TestDelayedExclusive:
    async def test_delayed_send_to_object_waits_for_lock(self, env: TestEnvironment) -> None:
        """A delayed call to an exclusive handler queues behind the key's lock when it is due."""
        await post(env, "/Counter/d/slow_add/send", 10)
        await env.settle()
        r = await env.ingress.post("/Counter/d/add/send?delay=2s", content=b"1", headers=JSON)
        inv_id = r.json()["invocationId"]
        await env.advance(timedelta(seconds=3))
        assert 0 == (await post(env, "/Counter/d/get")).json()  # still behind slow_add
        row = await env.engine.describe_invocation(inv_id)
        assert "pending" == row["status"]
        await env.advance(timedelta(seconds=3))
        assert 11 == (await post(env, "/Counter/d/get")).json()
        assert 11 == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()


class TestRetention:
    async def test_completed_invocations_are_purged_after_retention(
        self, env: TestEnvironment
    ) -> None:
        """After the retention (1 day by default) the result is gone and the key is free."""
        a = await post(env, "/Counter/ret/add", 1, **{"idempotency-key": "r1"})
        inv_id = a.headers["x-restate-id"]
        assert 200 == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).status_code
        await env.advance(timedelta(hours=23))
        assert 200 == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).status_code
        await env.advance(timedelta(hours=2))
        assert 404 == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).status_code
        b = await post(env, "/Counter/ret/add", 1, **{"idempotency-key": "r1"})
        assert inv_id == b.headers["x-restate-id"]
        assert 2 == b.json()  # ran again: the key was released with the record

    async def test_workflow_state_cleared_after_retention(self, env: TestEnvironment) -> None:
        """A finished workflow keeps its state and promises for the retention, then loses them."""
        await post(env, "/Signup/wr/signup_run/send", "x@y.z")
        await env.settle()
        await post(env, "/Signup/wr/verify", "9")
        await env.settle()
        assert {"email": b'"x@y.z"'} == await env.engine.get_state("Signup", "wr")
        await env.advance(timedelta(hours=25))
        assert {} == await env.engine.get_state("Signup", "wr")
        again = await post(env, "/Signup/wr/signup_run/send", "new@y.z")
        assert "Accepted" == again.json()["status"]


class TestIdempotentCalls:
    async def test_call_with_idempotency_key_runs_once(self, env: TestEnvironment) -> None:
        """Two calls from a handler with the same idempotency key execute once."""
        r = await post(env, "/Steps/idem_caller", "ik")
        assert [5, 5, 10] == r.json()
        assert 10 == (await post(env, "/Counter/ik/get")).json()


class TestDeferredCreate:
    async def test_plain_call_commits_once_when_it_completes_at_once(
        self, env: TestEnvironment
    ) -> None:
        """A blocking call that completes in its first attempt is written in one commit."""
        writes: list[int] = []
        original = env.backend.write

        async def counting(ops):  # type: ignore[no-untyped-def]
            writes.append(len(ops))
            await original(ops)

        env.backend.write = counting  # type: ignore[method-assign]
        r = await post(env, "/Greeter/greet", "one")
        assert "Hello, one!" == r.json()
        assert 1 == len(writes)
        row = await env.engine.describe_invocation(r.headers["x-restate-id"])
        assert ["INPUT_COMMAND", "OUTPUT_COMMAND"] == [
            e["entry_type"].split("(")[0] for e in row["journal"]
        ]

    async def test_send_is_recorded_before_it_is_acknowledged(self, env: TestEnvironment) -> None:
        """A /send answers 202 only after the invocation is stored."""
        r = await post(env, "/Greeter/greet/send", "two")
        inv_id = r.json()["invocationId"]
        assert await env.backend.get(f"inv/{inv_id}", "meta") is not None
