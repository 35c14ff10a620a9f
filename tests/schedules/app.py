"""Handlers the schedule tests fire, written with our SDK (in process).

``calls`` records every execution of a handler body with the tick header it saw, in this
process, so a test counts invocations without reading the store.
"""

from __future__ import annotations

from typing import Any

import restate_lambda as restate

calls: list[tuple[str, str | None, Any]] = []

cron = restate.Service("Cron")


@cron.handler()
async def tick(ctx: restate.Context, arg: Any = None) -> str:
    headers = ctx.request().headers
    calls.append(("Cron/tick", headers.get("x-restate-schedule-tick"), arg))
    return "ok"


@cron.handler(metadata={"restate_lambda.schedules": "*/5 * * * *"})
async def declared(ctx: restate.Context) -> None:
    calls.append(("Cron/declared", ctx.request().headers.get("x-restate-schedule-tick"), None))


@cron.handler(
    schedules=[
        restate.Schedule("0 9 * * MON-FRI", timezone="Europe/Berlin", name="weekdays"),
        restate.Schedule("@hourly", name="hourly", body={"every": "hour"}),
    ]
)
async def typed(ctx: restate.Context, arg: Any = None) -> None:
    calls.append(("Cron/typed", ctx.request().headers.get("x-restate-schedule-tick"), arg))


ticks = restate.VirtualObject("Ticks")


@ticks.handler()
async def record(ctx: restate.ObjectContext, arg: Any = None) -> int:
    n = (await ctx.get("n", type_hint=int)) or 0
    ctx.set("n", n + 1)
    calls.append(("Ticks/record", ctx.request().headers.get("x-restate-schedule-tick"), arg))
    return n + 1


flow = restate.Workflow("Report")


@flow.main()
async def run(ctx: restate.WorkflowContext) -> str:
    calls.append(("Report/run", ctx.key(), None))
    return ctx.key()


app = restate.app(services=[cron, ticks, flow])
