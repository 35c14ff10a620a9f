"""Lifecycle parity with Restate 1.7 in process: named signals, restart-as-new, purge-journal,
pause and resume, and the retry policy's ``on_max_attempts``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from backends.memory import MemoryBackend
from infra.testing import TestEnvironment, running_environment
from invoker.api import BadRequestError, ConflictingRequestError, GoneError, NotFoundError
from restate_lambda.testing import InvocationFailed
from tests.lifecycle import apps


@pytest.fixture
async def env() -> AsyncIterator[TestEnvironment]:
    apps.attempts.clear()
    async with running_environment(MemoryBackend()) as environment:
        await environment.mount("ours", apps.ours_app)
        await environment.mount("official", apps.official_app)
        yield environment


@pytest.mark.parametrize(
    ("waiter", "handler", "signaller", "resolve"),
    [("Waiter", "wait", "Signaller", "resolve"), ("OWaiter", "owait", "OSignaller", "oresolve")],
)
async def test_named_signal_is_delivered_once(
    env: TestEnvironment, waiter: str, handler: str, signaller: str, resolve: str
) -> None:
    inv = await env.send(waiter, handler)
    await env.settle()
    assert await env.status(inv) == "suspended"
    await env.call(signaller, resolve, {"id": inv, "value": "hello"})
    assert await env.result(inv) == "hello"
    # A second signal with the same name finds the invocation done: nothing happens twice.
    await env.call(signaller, resolve, {"id": inv, "value": "again"})
    assert await env.result(inv) == "hello"


async def test_named_signal_rejected(env: TestEnvironment) -> None:
    inv = await env.send("Waiter", "wait")
    await env.settle()
    await env.call("Signaller", "reject", {"id": inv, "message": "no way"})
    with pytest.raises(InvocationFailed) as failed:
        await env.result(inv)
    assert failed.value.code == 418 and "no way" in str(failed.value)


async def test_restart_as_new_and_from_prefix(env: TestEnvironment) -> None:
    first = await env.send("LSteps", "run", 3)
    assert await env.result(first) == [1, 1, 1]
    engine = env.engine
    fresh = await engine.restart_as_new(first)
    assert fresh != first
    assert await env.result(fresh) == [2, 2, 2]  # every step ran again
    row = await env.describe(fresh)
    assert row["invoked_by"] == "restart_as_new"
    # Keep commands 0..2 (input, s0 and its result, s1): only s2 runs again.
    prefix = await engine.restart_as_new(first, 2)
    assert await env.result(prefix) == [1, 1, 3]
    with pytest.raises(BadRequestError):
        await engine.restart_as_new(first, 99)
    with pytest.raises(BadRequestError):
        await engine.restart_as_new(first, None, "bogus")
    with pytest.raises(NotFoundError):
        await engine.restart_as_new("inv_1fFd06NC47Ki3ktvAzLWsKVOHcOTV2VtkV")
    running = await env.send("Waiter", "wait")
    await env.settle()
    with pytest.raises(ConflictingRequestError):
        await engine.restart_as_new(running)


async def test_purge_journal_keeps_the_output(env: TestEnvironment) -> None:
    inv = await env.send("LSteps", "run", 2)
    assert await env.result(inv) == [1, 1]
    await env.manage(inv, "purge-journal")
    await env.manage(inv, "purge-journal")  # idempotent
    assert await env.journal(inv) == []
    assert await env.result(inv) == [1, 1]
    with pytest.raises(GoneError):
        await env.engine.restart_as_new(inv)
    running = await env.send("Waiter", "wait")
    await env.settle()
    with pytest.raises(ConflictingRequestError, match="not yet completed"):
        await env.manage(running, "purge-journal")


async def test_pause_resume_answers(env: TestEnvironment) -> None:
    inv = await env.send("Waiter", "wait")
    await env.settle()
    await env.manage(inv, "resume")  # not paused: nothing to do (restate-server: 200)
    await env.manage(inv, "pause")
    assert await env.status(inv) == "paused"
    await env.manage(inv, "pause")
    await env.manage(inv, "resume")
    await env.settle()
    assert await env.status(inv) == "suspended"
    r = await env.admin.patch(f"/invocations/{inv}/resume?deployment=dp_11111111111111111111111")
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        f"The given deployment was not found when trying to resume the invocation '{inv}'."
    )
    # suspended and pinned: resumed on the latest deployment, it replays and suspends again
    r = await env.admin.patch(f"/invocations/{inv}/resume?deployment=latest")
    assert r.status_code == 200, r.text
    await env.settle()
    assert await env.status(inv) == "suspended"
    await env.manage(inv, "kill")
    with pytest.raises(ConflictingRequestError, match="cannot be paused"):
        await env.manage(inv, "pause")
    with pytest.raises(ConflictingRequestError, match="cannot be resumed"):
        await env.manage(inv, "resume")
    later = await env.ingress.post("/Waiter/wait/send?delay=1h")
    assert later.status_code == 202, later.text
    scheduled = later.json()["invocationId"]
    r = await env.admin.patch(f"/invocations/{scheduled}/resume")
    assert r.status_code == 425, r.text
    assert r.json()["message"] == (
        f"The invocation '{scheduled}' is either inboxed or scheduled, cannot be resumed."
    )


async def test_pause_of_a_running_attempt_is_accepted(env: TestEnvironment) -> None:
    """Paused while its attempt runs: accepted (202 at the admin API, as restate-server), and
    the attempt's outcome is not committed; resume runs the handler again to its end."""
    apps.gate.clear()
    apps.gate_entered.clear()
    inv = await env.send("Gated", "hold")
    await asyncio.wait_for(apps.gate_entered.wait(), 30)
    assert await env.status(inv) == "running"
    r = await env.admin.patch(f"/invocations/{inv}/resume?deployment=latest")
    assert r.status_code == 409, r.text
    assert r.json()["message"] == (
        f"The invocation '{inv}' is still running or the deployment id is not pinned yet, "
        "deployment id cannot be changed."
    )
    assert await env.engine.manage_invocation(inv, "pause") is True
    r = await env.admin.patch(f"/invocations/{inv}/pause")
    assert r.status_code == 200, r.text  # already paused
    apps.gate.set()
    await env.settle()
    assert await env.status(inv) == "paused"
    await env.manage(inv, "resume")
    assert await env.result(inv) == "through"


async def test_on_max_attempts_kill_and_pause(env: TestEnvironment) -> None:
    killed = await env.send("Flaky", "killed")
    paused = await env.send("Flaky", "paused")
    for _ in range(20):
        await env.advance(timedelta(seconds=1))
    assert apps.attempts["killed"] == 3
    with pytest.raises(InvocationFailed):
        await env.result(killed)
    assert await env.status(paused) == "paused"
    assert apps.attempts["paused"] == 3
    await env.manage(paused, "resume")
    assert await env.result(paused) == "fixed"


async def test_per_handler_idempotency_retention(env: TestEnvironment) -> None:
    """``Retained`` keeps idempotent results 2 hours (not the default day)."""
    inv = await env.send("Retained", "keep", idempotency_key="k")
    assert await env.result(inv) == "kept"
    await env.advance(timedelta(minutes=119))
    assert await env.result(inv) == "kept"
    await env.advance(timedelta(minutes=2))
    with pytest.raises(NotFoundError):
        await env.engine.output(inv)
