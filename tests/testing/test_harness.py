"""restate_lambda.testing.Harness: a manual clock that drives every timer, for both SDKs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import restate

from restate_lambda.testing import Harness, InvocationFailed, NotCompletedError
from tests.testing import apps

HOUR = timedelta(hours=1)
SDKS = [("Ours", apps.OURS), ("Theirs", apps.THEIRS)]


@pytest.fixture(params=["memory", "sqlite"])
def restate_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def restate_app() -> object:
    return [apps.OURS, apps.THEIRS]


@pytest.mark.parametrize("service", ["Ours", "Theirs"])
async def test_one_day_sleep_wakes_exactly_after_one_day(
    restate_harness: Harness, service: str
) -> None:
    """Advancing 1 day minus 1 ms leaves a 24-hour sleep asleep; 1 ms more wakes it; all in
    well under a second of wall time."""
    h = restate_harness
    started = time.perf_counter()
    t0 = h.now_ms
    inv = await h.send(service, "run", 24, key="k")
    await h.advance(timedelta(days=1) - timedelta(milliseconds=1) - HOUR * 23)
    assert {"phase": "sleeping"} == await h.state(service, "k")
    await h.advance(timedelta(milliseconds=1))
    assert 1 == (await h.state(service, "k"))["woke"]
    await h.advance(HOUR * 23)
    assert f"done at {(t0 + 86_400_000) / 1000}" == await h.result(inv)
    assert {"phase": "done", "woke": 24} == await h.state(service, "k")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("service", ["Ours", "Theirs"])
async def test_advance_fires_timers_in_order_on_the_way(
    restate_harness: Harness, service: str
) -> None:
    """Three hourly sleeps in a row all wake in one advance of three hours."""
    inv = await restate_harness.send(service, "run", 3, key="k")
    await restate_harness.advance(HOUR * 3)
    assert {"phase": "done", "woke": 3} == await restate_harness.state(service, "k")
    assert (await restate_harness.result(inv)).startswith("done")


@pytest.mark.parametrize("service", ["Ours", "Theirs"])
async def test_delayed_send_follows_the_manual_clock(
    restate_harness: Harness, service: str
) -> None:
    """A delayed send from a handler starts when the manual clock reaches its delay."""
    h = restate_harness
    run = await h.send(service, "run", 1, key="k")
    await h.call(service, "later", 30, key="k")

    async def pings() -> list[str]:
        rows = await h.invocations()
        return [r["status"] for r in rows if r["target_handler_name"] == "ping"]

    await h.advance(timedelta(seconds=29))
    assert ["scheduled"] == await pings()
    await h.advance(timedelta(seconds=1))
    assert ["completed"] == await pings()
    await h.advance(HOUR)
    assert (await h.result(run)).startswith("done")


async def test_waiting_is_explained(restate_harness: Harness) -> None:
    """A result that needs the clock or an awakeable says so instead of hanging."""
    h = restate_harness
    inv = await h.send("Ours", "run", 1, key="w")
    with pytest.raises(NotCompletedError, match=r"suspended, waiting for a timer due in 1 h"):
        await h.result(inv)
    with pytest.raises(NotCompletedError, match="an awakeable"):
        await h.call("Waiter", "wait", key="a")


async def test_awakeables(restate_harness: Harness) -> None:
    """resolve_awakeable and reject_awakeable complete a waiting handler."""
    h = restate_harness
    first = await h.send("Waiter", "wait", key="a")
    await h.settle()
    await h.resolve_awakeable((await h.state("Waiter", "a"))["awakeable"], "ok")
    assert "got ok" == await h.result(first)
    second = await h.send("Waiter", "wait", key="b")
    await h.settle()
    await h.reject_awakeable((await h.state("Waiter", "b"))["awakeable"], "nope")
    with pytest.raises(InvocationFailed, match="nope") as failed:
        await h.result(second)
    assert 500 == failed.value.code


async def test_journal_and_restart(restate_harness: Harness) -> None:
    """The journal reads entry by entry; a fresh engine on the same store resumes the work."""
    h = restate_harness
    inv = await h.send("Theirs", "run", 1, key="j")
    await h.settle()
    await h.restart()
    await h.advance(HOUR)
    kinds = [e.type for e in await h.journal(inv)]
    assert kinds[0] == "INPUT_COMMAND" and kinds[-1] == "OUTPUT_COMMAND", kinds
    assert "SLEEP_COMMAND" in kinds and "SLEEP_COMPLETION_NOTIFICATION" in kinds
    assert "completed" == await h.status(inv)


async def test_no_plain_def_handlers() -> None:
    """Mounting an app with a plain ``def`` handler fails at once, naming file and line."""
    svc = restate.Service("Sync")

    @svc.handler()
    def greet(ctx: restate.Context, name: str) -> str:  # type: ignore[misc]
        return name

    async with Harness() as h:
        with pytest.raises(TypeError, match=r"test_harness.py:\d+: handler Sync.greet is a plain"):
            await h.mount(restate.app([svc]))


def test_infra_testing_is_not_collected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A test module importing the repository's environment helper collects no test from it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "test_x.py").write_text(
        "from infra.testing import test_environment, TestEnvironment\ndef test_one():\n    pass\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert "1 passed" in out.stdout, out.stdout + out.stderr
    assert "warning" not in out.stdout.lower(), out.stdout


async def test_handlers_get_wall_time_back_after_close() -> None:
    """Closing the harness restores both SDKs' clocks (no patch leaks into other tests)."""
    import restate.server_context
    import restate.vm

    from restate_lambda.clock import SystemClock, handler_clock

    original_sleep = restate.vm.VMWrapper.sys_sleep
    original_time = vars(restate.server_context)["time"]
    async with Harness() as h:
        assert handler_clock() is h.clock
        assert restate.vm.VMWrapper.sys_sleep is not original_sleep
    assert isinstance(handler_clock(), SystemClock)
    assert restate.vm.VMWrapper.sys_sleep is original_sleep
    assert vars(restate.server_context)["time"] is original_time
