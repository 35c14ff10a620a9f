"""Handler mistakes that retrying cannot fix: named with handler and step, failed or paused at
once instead of retried 70 times (both SDKs)."""

from __future__ import annotations

from typing import Any

import pytest
import restate

import restate_lambda
from restate_lambda.testing import Harness, InvocationFailed, NotCompletedError

ours = restate_lambda.Service("OursBad")
theirs = restate.Service("TheirsBad")


@ours.handler()
async def out(ctx: restate_lambda.Context) -> Any:
    return {"lock": object()}


@ours.handler()
async def step(ctx: restate_lambda.Context) -> str:
    await ctx.run_typed("make", lambda: object())
    return "unreachable"


@theirs.handler(name="out")
async def theirs_out(ctx: restate.Context) -> dict[str, Any]:
    return {"tags": {"a", "b"}}


@theirs.handler(name="step")
async def theirs_step(ctx: restate.Context) -> str:
    await ctx.run_typed("make", lambda: {1, 2})
    return "unreachable"


def test_plain_def_is_refused_where_it_is_written() -> None:
    """restate_lambda refuses a plain ``def`` handler at decoration, with file and line."""
    svc = restate_lambda.Service("Sync")
    with pytest.raises(TypeError, match=r"test_mistakes.py:\d+: handler Sync.greet is a plain"):

        @svc.handler()
        def greet(ctx: restate_lambda.Context) -> str:  # type: ignore[misc]
            return "hi"


async def test_ours_fail_terminally_naming_handler_and_step() -> None:
    """Our SDK fails the invocation at the first attempt with a message naming the place."""
    async with Harness() as h:
        await h.mount(restate_lambda.app([ours]))
        with pytest.raises(InvocationFailed, match=r"OursBad/out: the return value \(dict\)"):
            await h.call("OursBad", "out")
        with pytest.raises(
            InvocationFailed, match=r"OursBad/step: the result of ctx.run\('make'\)"
        ):
            await h.call("OursBad", "step")
        rows = await h.invocations()
        assert [0, 0] == [r["retry_count"] for r in rows]


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("out", "TheirsBad/out: the return value cannot be serialized: TypeError"),
        ("step", "TheirsBad/step: the result of ctx.run('make') cannot be serialized"),
    ],
)
async def test_theirs_are_paused_after_one_attempt(handler: str, expected: str) -> None:
    """The official SDK reports these as retryable; the runtime recognizes them, pauses the
    invocation after its first attempt and says why."""
    async with Harness() as h:
        await h.mount(restate.app([theirs]))
        inv = await h.send("TheirsBad", handler)
        with pytest.raises(NotCompletedError) as waiting:
            await h.result(inv)
        assert expected in str(waiting.value) and "retrying cannot fix" in str(waiting.value)
        assert "paused" == await h.status(inv)
        assert 1 == (await h.describe(inv))["retry_count"]
