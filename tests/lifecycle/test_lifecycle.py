"""Lifecycle parity with Restate 1.7 in process: named signals, restart-as-new, purge-journal,
pause and resume, and the retry policy's ``on_max_attempts``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from backends.api import ConflictError
from backends.memory import MemoryBackend
from infra.testing import TestEnvironment, running_environment
from invoker import journal, keys
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


def _hours(n: float) -> int:
    return int(n * 3_600_000)


async def _items(env: TestEnvironment, inv: str) -> list[str]:
    return [i.sk for i in await env.backend.query(keys.inv(inv))]


async def test_journal_retention_shorter_than_idempotency_retention(env: TestEnvironment) -> None:
    """``Retained`` keeps the journal 1 hour and the idempotent outcome 2 hours: the journal
    goes first, the result still answers and dedups, then everything goes."""
    inv = await env.send("Retained", "keep", idempotency_key="k")
    assert await env.result(inv) == "kept"
    row = await env.describe(inv)
    completed = row["completed_at"]
    assert row["completion_retention_expires_at"] == completed + _hours(2)
    assert len(await env.journal(inv)) >= 2
    await env.advance(timedelta(minutes=59))
    assert len(await env.journal(inv)) >= 2
    await env.advance(timedelta(minutes=2))
    assert await env.journal(inv) == []
    assert not [sk for sk in await _items(env, inv) if sk.startswith(keys.JOURNAL_PREFIX)]
    row = await env.describe(inv)
    assert row["journal_size"] == 0
    assert row["completion_retention_expires_at"] == completed + _hours(2)
    assert (await env.engine.output(inv)).value == b'"kept"'
    assert await env.send("Retained", "keep", idempotency_key="k") == inv  # still dedups
    await env.advance(timedelta(minutes=60))
    assert await _items(env, inv) == []
    with pytest.raises(NotFoundError):
        await env.engine.output(inv)


async def test_journal_retention_longer_than_idempotency_retention(env: TestEnvironment) -> None:
    """The journal never outlives the record: both go at the idempotency retention's end."""
    inv = await env.send("LongJournal", "keep_long", idempotency_key="k")
    assert await env.result(inv) == "kept"
    row = await env.describe(inv)
    assert row["completion_retention_expires_at"] == row["completed_at"] + _hours(1)
    await env.advance(timedelta(minutes=59))
    assert len(await env.journal(inv)) >= 2
    assert await env.result(inv) == "kept"
    await env.advance(timedelta(minutes=2))
    assert await _items(env, inv) == []


async def test_journal_purge_interrupted_leaves_nothing_stuck(
    env: TestEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the record's write but before the segments' deletion leaves garbage that
    nothing reads and the final purge deletes; a conflict on the record retries."""
    monkeypatch.setattr(journal, "TAIL_BUDGET_BYTES", 0)  # every entry in a segment item
    committer = env.engine.lifecycle._committer
    real_write, real_delete = committer.write, committer.delete_garbage
    faults = {"write": 1, "delete": 1}

    async def write(ops: Any) -> None:
        if faults["write"]:
            faults["write"] -= 1
            raise ConflictError("injected")
        await real_write(ops)

    async def delete_garbage(keys_: Any) -> None:
        if faults["delete"]:
            faults["delete"] -= 1
            raise RuntimeError("crashed")
        await real_delete(keys_)

    inv = await env.send("Retained", "keep", idempotency_key="k")
    assert await env.result(inv) == "kept"
    committer.write, committer.delete_garbage = write, delete_garbage  # type: ignore[method-assign]
    await env.advance(timedelta(minutes=61))
    assert faults == {"write": 0, "delete": 0}
    # The segments are still stored, but the journal reads as gone.
    assert [sk for sk in await _items(env, inv) if sk.startswith(keys.JOURNAL_PREFIX)]
    assert await env.journal(inv) == []
    assert (await env.describe(inv))["journal_size"] == 0
    with pytest.raises(GoneError):
        await env.engine.restart_as_new(inv)
    assert await env.result(inv) == "kept"
    await env.advance(timedelta(minutes=60))
    assert await _items(env, inv) == []


async def test_engine_idempotency_retention_applies_without_a_handler_setting() -> None:
    """An idempotent invocation of a handler that sets no idempotency retention keeps its
    outcome for the engine's ``idempotency_retention_ms`` (it used the journal's)."""
    from invoker.config import EngineConfig

    config = EngineConfig(idempotency_retention_ms=_hours(3), journal_retention_ms=_hours(1))
    async with running_environment(MemoryBackend(), config) as environment:
        await environment.mount("ours", apps.ours_app)
        inv = await environment.send("Waiter", "wait", idempotency_key="k")
        await environment.settle()
        await environment.manage(inv, "kill")
        row = await environment.describe(inv)
        assert row["completion_retention_expires_at"] == row["completed_at"] + _hours(3)
