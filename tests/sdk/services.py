"""Handlers used by the in-process state-machine tests."""

from __future__ import annotations

from datetime import timedelta

import restate_lambda as restate
from restate_lambda import Context, ObjectContext, TerminalError

EXECUTED: list[str] = []
svc = restate.Service("Svc")
obj = restate.VirtualObject("Obj")


@svc.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


@svc.handler()
async def steps(ctx: Context, n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(await ctx.run_typed(f"step-{i}", _record, restate.RunOptions(), f"s{i}"))
    return out


def _record(what: str) -> str:
    EXECUTED.append(what)
    return what


@svc.handler()
async def other_step(ctx: Context, n: int) -> str:
    return await ctx.run_typed("different", lambda: "x")


@svc.handler()
async def sleeper(ctx: Context) -> str:
    try:
        await ctx.sleep(timedelta(seconds=10))
    except TerminalError as e:
        await ctx.run_typed("compensate", lambda: "undo")
        raise TerminalError(f"{e.message} after compensation", e.status_code) from e
    return "woke"


@svc.handler()
async def race(ctx: Context) -> str:
    a = ctx.sleep(timedelta(seconds=1))
    _, b = ctx.awakeable(type_hint=str)
    winner, value = await restate.select(timer=a, signal=b)
    return f"{winner}:{value}"


@svc.handler()
async def rand(ctx: Context) -> str:
    return f"{ctx.random().random()}|{ctx.uuid()}"


@svc.handler()
async def flaky(ctx: Context) -> str:
    def fail() -> str:
        raise ValueError("boom")

    return await ctx.run_typed("fail", fail, restate.RunOptions(max_attempts=2))


@obj.handler()
async def incr(ctx: ObjectContext) -> int:
    v = (await ctx.get("n", type_hint=int)) or 0
    ctx.set("n", v + 1)
    return v + 1


@obj.handler()
async def keys(ctx: ObjectContext) -> list[str]:
    return await ctx.state_keys()


app = restate.app([svc, obj])
