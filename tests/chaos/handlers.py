"""Handlers of the chaos run, written with the official restate-sdk, served in their own process.

Every side effect appends one line ``{what} {unix time}`` to ``$CHAOS_EFFECTS_DIR/{tag}.log``, so
the checker can tell a step that ran twice from one that ran once, and whether a kill of the
runtime happened between the two runs (the only acceptable reason for a re-run).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)

from restate_lambda.clock import SystemClock


def record(tag: str, what: str) -> str:
    """Append ``what`` and the time to the effects file of ``tag`` (O_APPEND: atomic)."""
    root = os.environ["CHAOS_EFFECTS_DIR"]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    fd = os.open(Path(root) / f"{safe}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{what} {SystemClock().now_ms() / 1000:.3f}\n".encode())
    finally:
        os.close(fd)
    return what


counter = restate.VirtualObject("ChaosCounter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + delta)
    return value + delta


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return (await ctx.get("count", type_hint=int)) or 0


steps = restate.Service("ChaosSteps")


@steps.handler()
async def run(ctx: Context, req: dict[str, Any]) -> list[str]:
    """``{"tag", "n"}``: n journaled steps, each recording itself."""
    return [
        await ctx.run_typed(f"step-{i}", record, restate.RunOptions(), req["tag"], f"step-{i}")
        for i in range(int(req["n"]))
    ]


@steps.handler()
async def nap(ctx: Context, req: dict[str, Any]) -> str:
    """``{"tag", "ms"}``: a step, a durable sleep, a step."""
    await ctx.run_typed("before", record, restate.RunOptions(), req["tag"], "before")
    await ctx.sleep(timedelta(milliseconds=int(req["ms"])))
    await ctx.run_typed("after", record, restate.RunOptions(), req["tag"], "after")
    return "rested"


@steps.handler()
async def fan(ctx: Context, req: dict[str, Any]) -> int:
    """``{"key", "n"}``: n one-way sends of ``add 1`` to the counter ``key``."""
    for _ in range(int(req["n"])):
        ctx.object_send(add, key=req["key"], arg=1)
    return int(req["n"])


flow = restate.Workflow("ChaosFlow")


@flow.main()
async def main(ctx: WorkflowContext, tag: str) -> str:
    code = await ctx.promise("code", type_hint=str).value()
    await ctx.run_typed("confirm", record, restate.RunOptions(), tag, "confirm")
    return f"confirmed {code}"


@flow.handler()
async def approve(ctx: WorkflowSharedContext, code: str) -> None:
    await ctx.promise("code", type_hint=str).resolve(code)


app = restate.app(services=[counter, steps, flow])
