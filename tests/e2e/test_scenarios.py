"""End-to-end scenarios: official restate-sdk handlers (request-response mode) behind a runtime.

Every test runs against each ``runtime`` param: the real restate-server 1.7.12 (the oracle) and
``restate-lambda dev``. Expected values are those observed from restate-server; a failure on
restate-lambda alone is a difference to fix.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.e2e.helpers import (
    call,
    cancelled_body,
    counter_value,
    error_body,
    json_or_none,
    send,
    wait_counter,
)
from tests.support.effects import Effects, poll
from tests.support.runtimes import Runtime

# ----------------------------------------------------------------------------- services


async def test_greet(ingress: httpx.AsyncClient) -> None:
    """A service handler's JSON output comes back as the body, with the invocation id header."""
    r = await call(ingress, "/Greeter/greet", "World")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, World!"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-restate-id"].startswith("inv_")
    assert "idempotency-expires" not in r.headers


async def test_versioned_call_send_attach_paths(ingress: httpx.AsyncClient) -> None:
    """The 1.7 ``/restate/call|send/...`` and ``/restate/attach/{id}`` paths work like the
    legacy ones."""
    r = await call(ingress, "/restate/call/Greeter/greet", "New")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, New!"

    r = await call(ingress, "/restate/send/Greeter/greet", "Sent")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "Accepted"
    inv = body["invocationId"]
    assert r.headers["x-restate-id"] == inv

    r = await ingress.get(f"/restate/attach/{inv}")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, Sent!"
    assert r.headers["x-restate-id"] == inv


# ----------------------------------------------------------------------------- virtual objects


async def test_counter_concurrent_adds_on_one_key(ingress: httpx.AsyncClient, tag: str) -> None:
    """40 concurrent exclusive calls on one key are serialised: every response is distinct."""
    results = await asyncio.gather(*(call(ingress, f"/Counter/{tag}/add", 1) for _ in range(40)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sorted(r.json() for r in results) == list(range(1, 41))
    assert await counter_value(ingress, tag) == 40


async def test_state_across_invocations_and_shared_reads(
    ingress: httpx.AsyncClient, tag: str
) -> None:
    """State persists across invocations per key, shared handlers read it, clear removes it."""
    key, other = f"{tag}-a", f"{tag}-b"
    assert (await call(ingress, f"/Counter/{key}/add", 5)).json() == 5
    assert (await call(ingress, f"/Counter/{key}/add", 7)).json() == 12
    assert await counter_value(ingress, key) == 12
    assert await counter_value(ingress, other) == 0  # isolated per key

    r = await call(ingress, f"/Counter/{key}/reset", no_body=True)
    assert r.status_code == 200, r.text
    assert r.content == b""  # a handler returning None gives an empty 200 ...
    assert "content-type" not in r.headers  # ... without a content type

    # Also when the declared output is optional (``str | None``) and the value is None.
    r = await call(ingress, f"/Awaiter/{tag}/awakeable_id", no_body=True)
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert "content-type" not in r.headers
    assert await counter_value(ingress, key) == 0
    assert (await call(ingress, f"/Counter/{key}/add", 1)).json() == 1


# ----------------------------------------------------------------------------- durable steps


async def test_run_steps_execute_exactly_once(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """Each ``ctx.run`` side effect happens once although the handler is replayed after each."""
    r = await call(ingress, "/Steps/run", {"tag": tag, "n": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"] == [f"step-{i}" for i in range(5)]
    assert body["invocation_id"] == r.headers["x-restate-id"]
    assert effects.lines(tag) == [f"step-{i}" for i in range(5)]


async def test_retryable_failure_then_success(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """A plain exception is retried (default policy); completed steps are not re-run."""
    r = await call(ingress, "/Flaky/run", {"tag": tag, "fail_times": 2}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == "ok after 2 failures"
    assert effects.lines(tag) == ["before", "failure", "failure", "after"]


async def test_terminal_error_is_returned_and_not_retried(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """``TerminalError("nope", 418)`` becomes HTTP 418 with a JSON error body; one attempt only."""
    r = await call(ingress, "/Failer/fail", tag)
    assert r.status_code == 418, r.text
    assert error_body(r) == {"code": 418, "message": "nope", "source": "invocation"}
    assert r.headers["x-restate-error-source"] == "invocation"
    inv = r.headers["x-restate-id"]
    assert inv.startswith("inv_")
    assert effects.count(tag, "attempt") == 1

    # The failure is the stored outcome: attaching later gives the same error.
    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 418, r.text
    assert error_body(r) == {"code": 418, "message": "nope", "source": "invocation"}
    assert effects.count(tag, "attempt") == 1


async def test_durable_sleep(ingress: httpx.AsyncClient, effects: Effects, tag: str) -> None:
    """``ctx.sleep(1 s)`` takes at least a second; steps around it run once."""
    started = time.monotonic()
    r = await call(ingress, "/Sleeper/sleep", {"tag": tag, "ms": 1000})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json() == "slept 1000 ms"
    assert elapsed >= 0.95, elapsed
    assert effects.count(tag, "before") == 1
    assert effects.count(tag, "after") == 1


# ----------------------------------------------------------------------------- communication


async def test_service_call(ingress: httpx.AsyncClient) -> None:
    """A handler calls another service and gets its result."""
    r = await call(ingress, "/Caller/call_greet", "Bob")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, Bob!"


async def test_one_way_send(ingress: httpx.AsyncClient, tag: str) -> None:
    """``object_send`` from a handler runs the target; its id can be attached to."""
    r = await call(ingress, "/Caller/send_add", {"key": tag, "delta": 2})
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent.startswith("inv_")
    await wait_counter(ingress, tag, 2)
    r = await ingress.get(f"/restate/invocation/{sent}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == 2


async def test_service_send_output(ingress: httpx.AsyncClient, tag: str) -> None:
    """``service_send`` from a handler: the sent invocation's output is readable by id."""
    r = await call(ingress, "/Caller/send_greet", {"name": tag})
    assert r.status_code == 200, r.text
    sent = r.json()
    r = await ingress.get(f"/restate/invocation/{sent}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == f"Hello, {tag}!"


async def test_delayed_send_from_handler(ingress: httpx.AsyncClient, tag: str) -> None:
    """``object_send(send_delay=1 s)``: nothing happens before the delay, then the call runs."""
    started = time.monotonic()
    r = await call(ingress, "/Caller/send_add", {"key": tag, "delta": 3, "delay_ms": 1000})
    assert r.status_code == 200, r.text
    sent = r.json()

    r = await ingress.get(f"/restate/invocation/{sent}/output")
    if time.monotonic() - started < 0.8:
        assert r.status_code == 470, r.text
        assert error_body(r) == {
            "code": 470,
            "source": "ingress",
            "message": "the invocation exists but has not completed yet",
        }
        assert await counter_value(ingress, tag) == 0

    await wait_counter(ingress, tag, 3)
    assert time.monotonic() - started >= 0.95


async def test_delayed_send_from_ingress(ingress: httpx.AsyncClient, tag: str) -> None:
    """``/send?delay=1s`` answers 202 with ``executionTime`` and runs the call after the delay."""
    started = time.monotonic()
    r = await call(ingress, f"/Counter/{tag}/add/send?delay=1s", 5)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "Accepted"
    assert body["invocationId"].startswith("inv_")
    assert "executionTime" in body
    assert r.headers["x-restate-id"] == body["invocationId"]
    await wait_counter(ingress, tag, 5)
    assert time.monotonic() - started >= 0.95

    r = await ingress.get(f"/restate/invocation/{body['invocationId']}/output")
    assert r.status_code == 200, r.text
    assert r.json() == 5


async def _awaiting(ingress: httpx.AsyncClient, key: str) -> tuple[str, str]:
    """Start ``Awaiter/{key}/wait`` and return (invocation id, awakeable id)."""
    inv = await send(ingress, f"/Awaiter/{key}/wait", no_body=True)

    async def read_id() -> str | None:
        r = await ingress.post(f"/Awaiter/{key}/awakeable_id")
        assert r.status_code == 200, r.text
        value: str | None = json_or_none(r)
        return value

    awakeable = await poll(read_id, lambda v: v is not None, what="awakeable id in state")
    assert awakeable is not None and awakeable.startswith("sign_1"), awakeable
    return inv, awakeable


async def test_awakeable_resolve(ingress: httpx.AsyncClient, tag: str) -> None:
    """An awakeable resolved over HTTP (202, empty body) resumes the waiting handler."""
    inv, awakeable = await _awaiting(ingress, tag)

    r = await ingress.get(f"/restate/invocation/{inv}/output")
    assert r.status_code == 470, r.text

    r = await call(ingress, f"/restate/awakeables/{awakeable}/resolve", "hello")
    assert r.status_code == 202, r.text
    assert r.content == b""

    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == "got hello"

    # Resolving again after completion is accepted too (and changes nothing).
    r = await call(ingress, f"/restate/awakeables/{awakeable}/resolve", "again")
    assert r.status_code == 202, r.text
    r = await ingress.get(f"/restate/invocation/{inv}/output")
    assert r.json() == "got hello"


async def test_awakeable_reject(ingress: httpx.AsyncClient, tag: str) -> None:
    """A rejection (text body) fails the awaiting handler with code 500 and that message."""
    inv, awakeable = await _awaiting(ingress, tag)
    r = await ingress.post(
        f"/restate/awakeables/{awakeable}/reject",
        content=b"bad thing",
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 202, r.text
    assert r.content == b""

    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 500, r.text
    assert error_body(r) == {"code": 500, "message": "bad thing", "source": "invocation"}


# ----------------------------------------------------------------------------- workflows


async def test_workflow_promise_attach_output_and_resubmission(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """The run handler executes once per id; a shared handler resolves its promise; the result
    is read through the workflow attach/output; re-submission is rejected or de-duplicated."""
    wf = f"/Signup/{tag}"
    payload = {"email": "a@example.com", "tag": tag}
    inv = await send(ingress, f"{wf}/run", payload)

    # A blocking second call while it runs: 409, pointing at the running invocation.
    r = await call(ingress, f"{wf}/run", payload)
    assert r.status_code == 409, r.text
    assert error_body(r) == {
        "code": 409,
        "source": "invocation",
        "message": "the workflow method was already invoked",
    }
    assert r.headers["x-restate-id"] == inv

    # A second /send: 202 PreviouslyAccepted with the original id.
    r = await call(ingress, f"{wf}/run/send", {"email": "other@example.com", "tag": tag})
    assert r.status_code == 202, r.text
    assert r.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}

    r = await ingress.get(f"/restate/workflow/Signup/{tag}/output")
    assert r.status_code == 470, r.text

    async def wf_status() -> str | None:
        resp = await ingress.post(f"{wf}/status")
        assert resp.status_code == 200, resp.text
        value: str | None = json_or_none(resp)
        return value

    await poll(wf_status, lambda v: v == "waiting", what="workflow waiting on its promise")

    r = await call(ingress, f"{wf}/click", "s3cret")
    assert r.status_code == 200, r.text
    assert r.content == b""

    expected = "verified a@example.com with s3cret"
    r = await ingress.get(f"/restate/workflow/Signup/{tag}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == expected
    assert r.headers["x-restate-id"] == inv
    r = await ingress.get(f"/restate/workflow/Signup/{tag}/output")
    assert r.status_code == 200, r.text
    assert r.json() == expected
    assert await wf_status() == "verified"

    # After completion: blocking call still 409, /send still PreviouslyAccepted.
    r = await call(ingress, f"{wf}/run", payload)
    assert r.status_code == 409, r.text
    assert error_body(r)["message"] == "the workflow method was already invoked"
    r = await call(ingress, f"{wf}/run/send", payload)
    assert r.status_code == 202, r.text
    assert r.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}

    # The promise can be completed only once.
    r = await call(ingress, f"{wf}/click", "again")
    assert r.status_code == 409, r.text
    assert error_body(r) == {
        "code": 409,
        "message": "promise was already completed",
        "source": "invocation",
    }

    assert effects.lines(tag) == ["send-email"]


async def test_unknown_workflow_attach_and_output(ingress: httpx.AsyncClient, tag: str) -> None:
    """Attach/output for a workflow id that never ran: 404."""
    r = await ingress.get(f"/restate/workflow/Signup/{tag}/output")
    assert r.status_code == 404, r.text
    assert error_body(r) == {"code": 404, "message": "invocation not found", "source": "ingress"}
    r = await ingress.get(f"/restate/workflow/Signup/{tag}/attach")
    assert r.status_code == 404, r.text
    assert error_body(r) == {"code": 404, "message": "not found", "source": "invocation"}


# ----------------------------------------------------------------------------- idempotency, attach


async def test_idempotency_key(ingress: httpx.AsyncClient, effects: Effects, tag: str) -> None:
    """Same idempotency key: same response and invocation id, the handler ran once; a duplicate
    ``/send`` is ``PreviouslyAccepted``; attach by key works."""
    headers = {"idempotency-key": tag}
    payload = {"tag": tag, "n": 2}
    first, concurrent = await asyncio.gather(
        call(ingress, "/Steps/run", payload, headers=headers),
        call(ingress, "/Steps/run", payload, headers=headers),
    )
    again = await call(ingress, "/Steps/run", payload, headers=headers)
    # The key alone identifies the invocation: a different body still gets the first result.
    other_body = await call(ingress, "/Steps/run", {"tag": tag, "n": 9}, headers=headers)
    for r in (first, concurrent, again, other_body):
        assert r.status_code == 200, r.text
        assert r.content == first.content
        assert r.headers["x-restate-id"] == first.headers["x-restate-id"]
    inv = first.headers["x-restate-id"]
    assert first.json()["invocation_id"] == inv
    assert "idempotency-expires" in again.headers
    assert effects.lines(tag) == ["step-0", "step-1"]

    r = await call(ingress, "/Steps/run/send", payload, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}

    r = await ingress.get(f"/restate/invocation/Steps/run/{tag}/attach")
    assert r.status_code == 200, r.text
    assert r.content == first.content
    assert r.headers["x-restate-id"] == inv
    assert effects.lines(tag) == ["step-0", "step-1"]


async def test_send_then_attach_and_output(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """``/send`` (no idempotency key) then attach by invocation id gets the result."""
    inv = await send(ingress, "/Steps/run", {"tag": tag, "n": 3})
    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == {"results": ["step-0", "step-1", "step-2"], "invocation_id": inv}
    assert r.headers["x-restate-id"] == inv
    r = await ingress.get(f"/restate/invocation/{inv}/output")
    assert r.status_code == 200, r.text
    assert r.json()["invocation_id"] == inv
    assert effects.lines(tag) == ["step-0", "step-1", "step-2"]


async def test_attach_to_plain_call_after_completion(ingress: httpx.AsyncClient) -> None:
    """1.7: a blocking call without idempotency key can still be attached/read by id later."""
    r = await call(ingress, "/Greeter/greet", "Later")
    inv = r.headers["x-restate-id"]
    for suffix in ("attach", "output"):
        r = await ingress.get(f"/restate/invocation/{inv}/{suffix}")
        assert r.status_code == 200, r.text
        assert r.json() == "Hello, Later!"
        assert r.headers["x-restate-id"] == inv
        assert "idempotency-expires" in r.headers


# ----------------------------------------------------------------------------- cancellation


async def test_cancel_runs_compensation(
    runtime: Runtime,
    ingress: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    effects: Effects,
    tag: str,
) -> None:
    """Admin cancel (202) interrupts a sleep with TerminalError 409; the compensation step runs
    once; the outcome seen through attach is 409 ``cancelled``."""
    inv = await send(ingress, "/Cancellable/run", tag)
    await effects.wait_for(tag, "sleeping")

    r = await admin.patch(f"/invocations/{inv}/cancel")
    assert r.status_code == 202, r.text
    assert r.content == b""

    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 409, r.text
    assert error_body(r) == cancelled_body(runtime.sdk)
    assert effects.count(tag, "start") == 1
    assert effects.count(tag, "compensate") == 1

    # Cancelling a completed invocation: 409 from the admin API.
    r = await admin.patch(f"/invocations/{inv}/cancel")
    assert r.status_code == 409, r.text
    assert r.json() == {
        "message": f"The invocation '{inv}' was already completed.",
        "restate_code": None,
    }


async def test_cancel_unknown_or_malformed_id(admin: httpx.AsyncClient) -> None:
    """Admin cancel: 404 for an unknown id, 400 for a malformed one."""
    unknown = "inv_1jl9KWPiVstV30o8YVIeAB3A60P5SKlaa5"
    r = await admin.patch(f"/invocations/{unknown}/cancel")
    assert r.status_code == 404, r.text
    assert r.json() == {
        "message": f"The requested invocation '{unknown}' does not exist",
        "restate_code": None,
    }
    r = await admin.patch("/invocations/garbage/cancel")
    assert r.status_code == 400, r.text
    assert r.json() == {
        "restate_code": None,
        "message": "The request field 'invocation_id' is invalid. Reason: bad format",
    }


def test_runtime_exposes_urls(runtime: Runtime) -> None:
    """The runtime fixture exposes loopback ingress and admin URLs."""
    assert runtime.ingress_url.startswith("http://127.0.0.1:")
    assert runtime.admin_url.startswith("http://127.0.0.1:")
    assert runtime.ingress_url != runtime.admin_url
