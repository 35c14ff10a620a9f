"""Admin lifecycle operations on invocations: cancel propagation, kill, purge.

Expected values are restate-server 1.7.12's (see the module docstring of test_scenarios.py).
"""

from __future__ import annotations

import httpx

from tests.e2e.helpers import call, cancelled_body, error_body, send
from tests.support.effects import Effects, poll
from tests.support.runtimes import Runtime


async def _parent_and_child(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> tuple[str, str]:
    """Start ``Caller.call_cancellable`` (which awaits ``Cancellable.run``); return both ids once
    the child reached its sleep."""
    parent = await send(ingress, "/Caller/call_cancellable", tag)
    await effects.wait_for(tag, "sleeping")

    async def parent_lines() -> list[str]:
        return effects.lines(f"{tag}-parent")

    lines = await poll(parent_lines, bool, what="caller recorded the callee id")
    child = lines[0].removeprefix("child ")
    assert child.startswith("inv_"), child
    return parent, child


async def test_cancel_propagates_to_callee(
    runtime: Runtime,
    ingress: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    effects: Effects,
    tag: str,
) -> None:
    """Cancelling a caller cancels the call it awaits: the callee compensates and fails with 409,
    which the caller sees and fails with too."""
    parent, child = await _parent_and_child(ingress, effects, tag)

    r = await admin.patch(f"/invocations/{parent}/cancel")
    assert r.status_code == 202, r.text

    cancelled = cancelled_body(runtime.sdk)
    r = await ingress.get(f"/restate/invocation/{parent}/attach")
    assert r.status_code == 409, r.text
    assert error_body(r) == cancelled
    r = await ingress.get(f"/restate/invocation/{child}/attach")
    assert r.status_code == 409, r.text
    assert error_body(r) == cancelled
    assert effects.count(tag, "start") == 1
    assert effects.count(tag, "compensate") == 1


async def test_kill_skips_compensation_and_propagates(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """Kill answers 200 (cancel answers 202); the outcome is 409 ``killed`` for the caller and
    its callee, and no handler code (compensation) runs."""
    parent, child = await _parent_and_child(ingress, effects, tag)

    r = await admin.patch(f"/invocations/{parent}/kill")
    assert r.status_code == 200, r.text
    assert r.content == b""

    killed = {"code": 409, "message": "killed", "source": "invocation"}
    for inv in (parent, child):
        r = await ingress.get(f"/restate/invocation/{inv}/attach")
        assert r.status_code == 409, r.text
        assert error_body(r) == killed
    assert effects.count(tag, "compensate") == 0

    r = await admin.patch(f"/invocations/{parent}/kill")
    assert r.status_code == 409, r.text
    assert r.json() == {
        "message": f"The invocation '{parent}' was already completed.",
        "restate_code": None,
    }


async def test_purge(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """Purge (200) deletes a completed invocation and frees its idempotency key; purging a
    running invocation is 409, an unknown one 404."""
    headers = {"idempotency-key": tag}
    first = await call(ingress, "/Steps/run", {"tag": tag, "n": 1}, headers=headers)
    assert first.status_code == 200, first.text
    inv = first.headers["x-restate-id"]

    r = await admin.patch(f"/invocations/{inv}/purge")
    assert r.status_code == 200, r.text
    assert r.content == b""

    r = await ingress.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 404, r.text
    assert error_body(r) == {"code": 404, "message": "not found", "source": "invocation"}
    r = await ingress.get(f"/restate/invocation/{inv}/output")
    assert r.status_code == 404, r.text
    assert error_body(r) == {"code": 404, "message": "invocation not found", "source": "ingress"}

    r = await admin.patch(f"/invocations/{inv}/purge")
    assert r.status_code == 404, r.text
    assert r.json() == {
        "message": f"The requested invocation '{inv}' does not exist",
        "restate_code": None,
    }

    # The key is free again: the same id (derived from the key) runs anew.
    again = await call(ingress, "/Steps/run", {"tag": tag, "n": 1}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["x-restate-id"] == inv
    assert effects.lines(tag) == ["step-0", "step-0"]

    running = await send(ingress, "/Cancellable/run", f"{tag}-running")
    await effects.wait_for(f"{tag}-running", "sleeping")
    r = await admin.patch(f"/invocations/{running}/purge")
    assert r.status_code == 409, r.text
    assert r.json() == {
        "message": f"The invocation '{running}' is not yet completed.",
        "restate_code": None,
    }
    r = await admin.patch(f"/invocations/{running}/kill")
    assert r.status_code == 200, r.text
