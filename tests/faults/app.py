"""Handlers of the fault-injection scenarios, written with the official restate-sdk.

``effects`` counts what the handlers did outside the journal (the test's process is theirs), so
a scenario can tell a state update applied twice from one applied once.
"""

from __future__ import annotations

from datetime import timedelta

import restate

effects: dict[str, int] = {}


def bump(name: str) -> int:
    effects[name] = effects.get(name, 0) + 1
    return effects[name]


svc = restate.Service("FGreeter")


@svc.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


@svc.handler()
async def nothing(ctx: restate.Context) -> None:
    bump("nothing")


@svc.handler()
async def steps(ctx: restate.Context, n: int) -> list[int]:
    return [await ctx.run_typed(f"step-{i}", bump, name=f"step-{i}") for i in range(n)]


@svc.handler()
async def caller(ctx: restate.Context, name: str) -> str:
    greeting = await ctx.service_call(greet, arg=name)
    ctx.service_send(nothing, arg=None)
    ctx.object_send(add, key="sent", arg=1, send_delay=timedelta(seconds=10))
    return f"called: {greeting}"


@svc.handler()
async def sleepy(ctx: restate.Context, seconds: int) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "woke"


@svc.handler()
async def cancellable(ctx: restate.Context) -> str:
    try:
        await ctx.sleep(timedelta(days=1))
    except restate.TerminalError:
        await ctx.run_typed("compensate", bump, name="compensated")
        raise
    return "slept"


@svc.handler()
async def fanout(ctx: restate.Context, n: int) -> int:
    for _ in range(n):
        ctx.object_send(add, key="fan", arg=1)
    return n


counter = restate.VirtualObject("FCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, n: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + n)
    return value + n


@counter.handler()
async def slow_add(ctx: restate.ObjectContext, n: int) -> int:
    await ctx.sleep(timedelta(seconds=5))
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + n)
    return value + n


awaiter = restate.VirtualObject("FAwaiter")


@awaiter.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    awk_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awk_id)
    return f"got {await fut}"


signup = restate.Workflow("FSignup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    code = await ctx.promise("code", type_hint=str).value()
    return f"{email} verified with {code}"


@signup.handler()
async def verify(ctx: restate.WorkflowSharedContext, code: str) -> None:
    await ctx.promise("code", type_hint=str).resolve(code)


app = restate.app([svc, counter, awaiter, signup])


# Our SDK, which checkpoints each step in the middle of its attempt (the checkpoint channel).
import restate_lambda  # noqa: E402

ours = restate_lambda.Service("OSteps")


@ours.handler()
async def osteps(ctx: restate_lambda.Context, n: int) -> list[int]:
    return [await ctx.run_typed(f"ostep-{i}", bump, name=f"ostep-{i}") for i in range(n)]


@ours.handler()
async def ocall(ctx: restate_lambda.Context, n: int) -> int:
    """A step, then a send (its effect goes out with the next checkpoint or the end)."""
    first = await ctx.run_typed("before", bump, name="ocall-before")
    ctx.generic_send("FCounter", "add", str(n).encode(), key="ocall")
    await ctx.run_typed("after", bump, name="ocall-after")
    return first


ocounter = restate_lambda.VirtualObject("OCounter")


@ocounter.handler()
async def oadd(ctx: restate_lambda.ObjectContext, n: int) -> int:
    """State set on both sides of a checkpointed step (the step's commit carries the first)."""
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + n)
    await ctx.run_typed("bump", bump, name="oadd-bump")
    ctx.set("count", value + 2 * n)
    return value + 2 * n


ours_app = restate_lambda.app([ours, ocounter])
