"""Handlers of both SDKs for the harness tests: the same behaviour written twice."""

from __future__ import annotations

from datetime import timedelta

import restate

import restate_lambda

ours = restate_lambda.Workflow("Ours")
theirs = restate.Workflow("Theirs")


@ours.main(name="run")
async def ours_run(ctx: restate_lambda.WorkflowContext, hours: int) -> str:
    ctx.set("phase", "sleeping")
    for _ in range(hours):
        await ctx.sleep(timedelta(hours=1))
        ctx.set("woke", ((await ctx.get("woke", type_hint=int)) or 0) + 1)
    ctx.set("phase", "done")
    now = await ctx.time()
    return f"done at {now}"


@ours.handler(name="later")
async def ours_later(ctx: restate_lambda.WorkflowSharedContext, seconds: int) -> None:
    ctx.workflow_send(ours_ping, ctx.key(), None, send_delay=timedelta(seconds=seconds))


@ours.handler(name="ping")
async def ours_ping(ctx: restate_lambda.WorkflowSharedContext) -> None:
    await ctx.promise("pinged", type_hint=str).resolve("yes")


@theirs.main(name="run")
async def theirs_run(ctx: restate.WorkflowContext, hours: int) -> str:
    ctx.set("phase", "sleeping")
    for _ in range(hours):
        await ctx.sleep(timedelta(hours=1))
        ctx.set("woke", ((await ctx.get("woke", type_hint=int)) or 0) + 1)
    ctx.set("phase", "done")
    now = await ctx.time()
    return f"done at {now}"


@theirs.handler(name="later")
async def theirs_later(ctx: restate.WorkflowSharedContext, seconds: int) -> None:
    ctx.workflow_send(theirs_ping, ctx.key(), None, send_delay=timedelta(seconds=seconds))


@theirs.handler(name="ping")
async def theirs_ping(ctx: restate.WorkflowSharedContext) -> None:
    await ctx.promise("pinged", type_hint=str).resolve("yes")


waiter = restate_lambda.VirtualObject("Waiter")


@waiter.handler()
async def wait(ctx: restate_lambda.ObjectContext) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    return f"got {await promise}"


OURS = restate_lambda.app([ours, waiter])
THEIRS = restate.app([theirs])
