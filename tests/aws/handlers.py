"""The same small services written twice: with the official restate-sdk and with restate_lambda.

Both run as Lambda handler functions behind the local Invoke endpoint
(:mod:`infra.local_lambda`). ``CALLS`` counts executions of journaled steps and handler bodies
in this process, so tests can tell replays from re-executions.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import restate

import restate_lambda

#: (sdk, what) -> executions
CALLS: Counter[tuple[str, str]] = Counter()


def _bump(sdk: str, what: str) -> int:
    CALLS[(sdk, what)] += 1
    return CALLS[(sdk, what)]


def build(sdk: Any, name: str) -> list[Any]:
    """The services, built with ``sdk`` (the ``restate`` or ``restate_lambda`` module)."""
    greeter = sdk.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: Any, who: str) -> str:
        return f"Hello, {who}!"

    @greeter.handler()
    async def fail(ctx: Any, who: str) -> str:
        _bump(name, "fail")
        raise ValueError("transient")

    @greeter.handler()
    async def size(ctx: Any, data: str) -> int:
        return len(data)

    @greeter.handler()
    async def echo(ctx: Any, data: str) -> str:
        return data

    counter = sdk.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: Any, n: int) -> int:
        value = (await ctx.get("count", type_hint=int)) or 0
        ctx.set("count", value + n)
        return value + n

    @counter.handler(kind="shared")
    async def get(ctx: Any) -> int:
        return (await ctx.get("count", type_hint=int)) or 0

    steps = sdk.Service("Steps")

    @steps.handler()
    async def five(ctx: Any, x: int) -> int:
        for i in range(5):
            x = await ctx.run_typed(f"step-{i}", lambda v=x: v + 1)
        return int(x)

    @steps.handler()
    async def slow(ctx: Any, seconds: float) -> str:
        """A step that outlasts a short call deadline."""
        await ctx.run_typed("slow", lambda: time.sleep(seconds) or _bump(name, "slow"))
        return "slept"

    flow = sdk.Workflow("Flow")

    @flow.main()
    async def run(ctx: Any, seconds: int) -> str:
        await ctx.run_typed("start", lambda: _bump(name, "flow-start"))
        await ctx.sleep(timedelta(seconds=seconds))
        awk_id, fut = ctx.awakeable(type_hint=str)
        ctx.set("awakeable", awk_id)
        value = await fut
        _bump(name, "flow-end")
        return f"woke and got {value}"

    @flow.handler()
    async def awakeable(ctx: Any) -> str | None:
        value: str | None = await ctx.get("awakeable", type_hint=str)
        return value

    return [greeter, counter, steps, flow]


SDK_SERVICES = build(restate, "sdk")
OURS_SERVICES = build(restate_lambda, "ours")
