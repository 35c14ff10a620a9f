"""SDK scenarios behind a runtime: restate-server in request-response and bidi mode, and
``restate-lambda dev``. The deployment is restate-sdk code with only its imports changed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.sdk.conftest import SdkRuntime
from tests.support.effects import Effects

pytestmark = pytest.mark.server


def post(rt: SdkRuntime, path: str, body: Any = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{rt.ingress_url}{path}", json=body, timeout=timeout)


def value(r: httpx.Response) -> Any:
    """The JSON value a handler answered; None for an empty body (a handler that returned
    None, e.g. reading state that is not written yet, answers an empty body)."""
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


def wait_for(check: Any, timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_greet(sdk_runtime: SdkRuntime) -> None:
    """A plain handler."""
    r = post(sdk_runtime, "/Greeter/greet", "Ada")
    assert r.status_code == 200 and r.json() == "Hello, Ada!"


def test_steps_run_once_each(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """Journaled steps run exactly once each and their results come back in order."""
    r = post(sdk_runtime, "/Steps/run", {"tag": tag, "n": 3})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == ["step-0", "step-1", "step-2"]
    assert sdk_effects.lines(tag) == ["step-0", "step-1", "step-2"]


def test_state(sdk_runtime: SdkRuntime, tag: str) -> None:
    """Virtual object state: exclusive writes, shared read, clear."""
    assert post(sdk_runtime, f"/Counter/{tag}/add", 2).json() == 2
    assert post(sdk_runtime, f"/Counter/{tag}/add", 3).json() == 5
    assert post(sdk_runtime, f"/Counter/{tag}/get").json() == 5
    assert post(sdk_runtime, f"/Counter/{tag}/reset").status_code == 200
    assert post(sdk_runtime, f"/Counter/{tag}/get").json() == 0


def test_sleep(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """A durable sleep between two steps; each step runs once."""
    r = post(sdk_runtime, "/Sleeper/sleep", {"tag": tag, "ms": 200})
    assert r.status_code == 200 and r.json() == "slept 200 ms"
    assert sdk_effects.count(tag, "before") == 1 and sdk_effects.count(tag, "after") == 1


def test_calls_and_sends(sdk_runtime: SdkRuntime, tag: str) -> None:
    """Request-response calls (also to private services) and one-way sends with a delay."""
    assert post(sdk_runtime, "/Caller/call_greet", "Bob").json() == "Hello, Bob!"
    assert post(sdk_runtime, "/Caller/call_private", "Eve").json() == "secret for Eve"
    inv = post(sdk_runtime, "/Caller/send_add", {"key": tag, "delta": 4, "delay_ms": 100}).json()
    assert inv.startswith("inv_")
    wait_for(lambda: value(post(sdk_runtime, f"/Counter/{tag}/get")) == 4, what="delayed send")


def test_awakeable(sdk_runtime: SdkRuntime, tag: str) -> None:
    """An awakeable resolved from the ingress completes the waiting handler."""
    r = httpx.post(f"{sdk_runtime.ingress_url}/Awaiter/{tag}/wait/send", json=None, timeout=30)
    assert r.status_code == 202, r.text
    inv = r.json()["invocationId"]
    aid = wait_for(
        lambda: value(post(sdk_runtime, f"/Awaiter/{tag}/awakeable_id")), what="awakeable id"
    )
    assert aid.startswith("sign_1")
    r = httpx.post(
        f"{sdk_runtime.ingress_url}/restate/awakeables/{aid}/resolve", json="yes", timeout=30
    )
    assert r.status_code in (200, 202), r.text
    r = httpx.get(f"{sdk_runtime.ingress_url}/restate/invocation/{inv}/attach", timeout=30)
    assert r.json() == "got yes"


def test_workflow_promise(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """A workflow waits for a promise resolved by a shared handler."""
    r = httpx.post(
        f"{sdk_runtime.ingress_url}/Signup/{tag}/run/send",
        json={"email": "a@b.c", "tag": tag},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    wait_for(lambda: value(post(sdk_runtime, f"/Signup/{tag}/status")) == "waiting", what="waiting")
    assert post(sdk_runtime, f"/Signup/{tag}/click", "s3cret").status_code == 200
    r = httpx.get(f"{sdk_runtime.ingress_url}/restate/workflow/Signup/{tag}/attach", timeout=30)
    assert r.json() == "verified a@b.c with s3cret"
    assert sdk_effects.count(tag, "send-email") == 1


def test_retries(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """Retryable failures are retried; the step before them is not executed again."""
    r = post(sdk_runtime, "/Flaky/run", {"tag": tag, "fail_times": 2}, timeout=60)
    assert r.status_code == 200 and r.json() == "ok after 2 failures"
    assert sdk_effects.count(tag, "before") == 1 and sdk_effects.count(tag, "after") == 1


def test_terminal_error(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """A TerminalError is the result (its code is the HTTP status), never retried."""
    r = post(sdk_runtime, "/Failer/fail", tag)
    assert r.status_code == 418 and "nope" in r.text
    assert sdk_effects.count(tag, "attempt") == 1


def test_cancellation(sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str) -> None:
    """Cancelling a sleeping invocation raises TerminalError(409) there; compensation runs."""
    r = httpx.post(f"{sdk_runtime.ingress_url}/Cancellable/run/send", json=tag, timeout=30)
    inv = r.json()["invocationId"]
    wait_for(lambda: sdk_effects.count(tag, "sleeping") >= 1, what="sleeping")
    r = httpx.patch(f"{sdk_runtime.admin_url}/invocations/{inv}/cancel", timeout=30)
    assert r.status_code in (200, 202), r.text
    r = httpx.get(f"{sdk_runtime.ingress_url}/restate/invocation/{inv}/attach", timeout=30)
    assert r.status_code == 409, r.text
    wait_for(lambda: sdk_effects.count(tag, "compensate") == 1, what="compensation")


def test_combinators(sdk_runtime: SdkRuntime, tag: str) -> None:
    """gather, select and wait_completed resolve deterministically."""
    r = post(sdk_runtime, "/Combo/race", tag)
    assert r.status_code == 200, r.text
    assert r.json() == {"gathered": ["A", "B"], "winner": "timer", "done": 1}


#: Handler invocations for five steps. Each step is durable before the next one runs: over
#: HTTP/2 the runtime acknowledges it on the stream (one invocation); in request-response mode
#: without a checkpoint channel the attempt suspends after each step (six invocations). Ours
#: mounts the app in process in request-response mode and offers no checkpoint channel yet.
#: restate-lambda offers the checkpoint channel: one request-response invocation for 5 steps.
FIVE_STEP_BODIES = {
    "server-bidi": 1,
    "server-rr": 6,
    "restate-lambda": 1,
    "lambda-rr": 1,
    "lambda-bidi": 1,
}


def test_five_steps_invocation_count(
    sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str
) -> None:
    """Every step of a 5-step handler runs exactly once in every mode; the handler body runs
    once over HTTP/2 and with a checkpoint channel, once per step plus one in request-response
    mode without one (restate-server)."""
    r = post(sdk_runtime, "/Combo/five_steps", tag)
    assert r.status_code == 200, r.text
    assert r.json() == [f"step-{i}" for i in range(5)]
    assert [sdk_effects.count(tag, f"step-{i}") for i in range(5)] == [1] * 5
    assert sdk_effects.count(tag, "body") == FIVE_STEP_BODIES[sdk_runtime.name]


def test_charge_once_when_a_later_step_outlives_the_attempt(
    sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str
) -> None:
    """The charge scenario with default settings: key, charge(key), then a step that outlives
    the attempt timeout (restate-server aborts the attempt and retries). The key and the charge
    were durable before the slow step ran, so the charge happens once, with the first key."""
    r = post(sdk_runtime, "/Charge/pay", tag, timeout=60)
    assert r.status_code == 200, r.text
    charges = [line for line in sdk_effects.lines(tag) if line.startswith("charge ")]
    assert charges == [f"charge {r.json()}"]
    slow_runs = sdk_effects.count(tag, "slow")
    assert slow_runs == 2, "the first attempt was not aborted: the scenario did not happen"


def test_non_determinism_is_detected(
    sdk_runtime: SdkRuntime, sdk_effects: Effects, tag: str
) -> None:
    """A replay that produces a different step name never completes (journal mismatch 570)."""
    r = httpx.post(f"{sdk_runtime.ingress_url}/NonDet/run/send", json=tag, timeout=30)
    inv = r.json()["invocationId"]
    wait_for(lambda: sdk_effects.count(tag, "attempt") >= 2, what="retry")
    if sdk_runtime.name.startswith("server"):

        def failure_code() -> Any:
            q = httpx.post(
                f"{sdk_runtime.admin_url}/query",
                json={"query": f"SELECT last_failure FROM sys_invocation WHERE id = '{inv}'"},
                headers={"accept": "application/json"},
                timeout=30,
            )
            rows = q.json().get("rows", [])
            return rows and "[570 Journal mismatch]" in str(rows[0].get("last_failure"))

        try:
            wait_for(failure_code, what="570 as the last failure")
        except AssertionError:
            q = httpx.post(
                f"{sdk_runtime.admin_url}/query",
                json={
                    "query": "SELECT "
                    f"last_failure, last_failure_error_code FROM sys_invocation WHERE id = '{inv}'"
                },
                headers={"accept": "application/json"},
                timeout=30,
            )
            raise AssertionError(q.text) from None
    r = httpx.get(f"{sdk_runtime.ingress_url}/restate/invocation/{inv}/output", timeout=30)
    assert r.status_code == 470
    httpx.patch(f"{sdk_runtime.admin_url}/invocations/{inv}/kill", timeout=30)


def test_deployment_protocol(sdk_runtime: SdkRuntime) -> None:
    """The runtime registered the app in the expected protocol mode."""
    if sdk_runtime.name == "restate-lambda":
        pytest.skip("our runtime mounts the app in process")
    deployments = httpx.get(f"{sdk_runtime.admin_url}/deployments", timeout=30).json()[
        "deployments"
    ]
    expected = "BidiStream" if sdk_runtime.name.endswith("bidi") else "RequestResponse"
    assert {d["protocol_type"] for d in deployments} == {expected}
