"""Crash recovery: ``kill -9`` the runtime during a durable sleep, restart it on the same data.

Required of restate-lambda. Skipped for restate-server by default (it restarts slowly and its
recovery is not what we test); set ``E2E_CRASH_RESTATE_SERVER=1`` to run it there too, which is
how this test itself was validated.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.e2e.helpers import send
from tests.support.effects import Effects
from tests.support.runtimes import Runtime


async def test_kill9_during_sleep_then_restart(
    runtime: Runtime, ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """The invocation survives a ``kill -9`` mid-sleep: it completes after the restart and the
    step journaled before the crash is not run again."""
    if runtime.name == "restate-server" and os.environ.get("E2E_CRASH_RESTATE_SERVER") != "1":
        pytest.skip("restate-lambda only (set E2E_CRASH_RESTATE_SERVER=1 to run on restate-server)")

    sleep_ms = 3000
    started = time.monotonic()
    inv = await send(ingress, "/Sleeper/sleep", {"tag": tag, "ms": sleep_ms})
    await effects.wait_for(tag, "sleeping")  # the step is journaled and the sleep was reached
    assert effects.count(tag, "before") == 1

    runtime.kill9_and_restart()
    if time.monotonic() - started < sleep_ms / 1000 - 0.5:
        assert effects.count(tag, "after") == 0, "the sleep must not end early"

    async with httpx.AsyncClient(base_url=runtime.ingress_url, timeout=60) as client:
        r = await client.get(f"/restate/invocation/{inv}/attach")
    assert r.status_code == 200, r.text
    assert r.json() == f"slept {sleep_ms} ms"
    assert time.monotonic() - started >= sleep_ms / 1000 - 0.05
    assert effects.count(tag, "before") == 1
    assert effects.count(tag, "after") == 1
