"""Handlers written with the official restate-sdk, driven in process by the engine tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate

#: side effects observed by tests (the app runs in the test's process)
calls: dict[str, int] = {}


def bump(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


@greeter.handler()
async def nothing(ctx: restate.Context) -> None:
    bump("nothing")


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, n: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    value += n
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("count", type_hint=int)) or 0


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear_all()


@counter.handler()
async def slow_add(ctx: restate.ObjectContext, n: int) -> int:
    await ctx.sleep(timedelta(seconds=5))
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + n)
    return value + n


steps = restate.Service("Steps")


@steps.handler()
async def run(ctx: restate.Context, n: int) -> list[int]:
    out = []
    for i in range(n):
        out.append(await ctx.run_typed(f"step-{i}", bump, name=f"step-{i}"))
    return out


@steps.handler()
async def flaky(ctx: restate.Context, fail_times: int) -> str:
    await ctx.run_typed("before", bump, name="flaky-before")
    attempt = bump("flaky-attempt")
    if attempt <= fail_times:
        raise ValueError(f"transient failure {attempt}")
    return "ok"


@steps.handler()
async def terminal(ctx: restate.Context) -> str:
    bump("terminal")
    raise restate.TerminalError("nope", status_code=418)


@steps.handler()
async def sleepy(ctx: restate.Context, seconds: int) -> str:
    await ctx.run_typed("before", bump, name="sleepy-before")
    await ctx.sleep(timedelta(seconds=seconds))
    bump("sleepy-after")
    return "woke"


@steps.handler()
async def caller(ctx: restate.Context, name: str) -> str:
    greeting = await ctx.service_call(greet, arg=name)
    ctx.service_send(nothing, arg=None)
    ctx.object_send(add, key="sent", arg=1, send_delay=timedelta(seconds=10))
    return f"called: {greeting}"


@steps.handler()
async def cancellable(ctx: restate.Context) -> str:
    try:
        await ctx.sleep(timedelta(days=1))
    except restate.TerminalError:
        await ctx.run_typed("compensate", bump, name="compensated")
        raise
    return "slept"


@steps.handler()
async def idem_caller(ctx: restate.Context, key: str) -> list[int]:
    first = await ctx.object_call(add, key=key, arg=5, idempotency_key="same")
    second = await ctx.object_call(add, key=key, arg=5, idempotency_key="same")
    third = await ctx.object_call(add, key=key, arg=5)
    return [first, second, third]


awaiter = restate.VirtualObject("Awaiter")


@awaiter.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    awk_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awk_id)
    return f"got {await fut}"


@awaiter.handler(kind="shared")
async def awakeable_id(ctx: restate.ObjectSharedContext) -> Any:
    return await ctx.get("awakeable")


signup = restate.Workflow("Signup")


@signup.main()
async def signup_run(ctx: restate.WorkflowContext, email: str) -> str:
    ctx.set("email", email)
    code = await ctx.promise("code", type_hint=str).value()
    return f"{email} verified with {code}"


@signup.handler()
async def verify(ctx: restate.WorkflowSharedContext, code: str) -> None:
    await ctx.promise("code", type_hint=str).resolve(code)


private = restate.Service("Private", ingress_private=True)


@private.handler()
async def secret(ctx: restate.Context) -> str:
    return "secret"


app = restate.app([greeter, counter, steps, awaiter, signup, private])
