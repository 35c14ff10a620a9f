"""Fan-out: split work across calls to a worker service and gather the results.

``POST /Fanout/run`` with ``[1, 2, 3]`` calls ``Worker/square`` once per item, concurrently,
and returns ``{"squares": [1, 4, 9], "total": 14}``.
"""

from __future__ import annotations

from typing import Any

import restate_lambda as restate
from restate_lambda import Context

worker = restate.Service("Worker")
fanout = restate.Service("Fanout")


@worker.handler()
async def square(ctx: Context, n: int) -> int:
    """``n * n``."""
    return n * n


@fanout.handler()
async def run(ctx: Context, items: list[int]) -> dict[str, Any]:
    """Call ``Worker.square`` for every item and gather the results."""
    calls = [ctx.service_call(square, n) for n in items]
    await restate.gather(*calls)
    squares = [await c for c in calls]
    return {"squares": squares, "total": sum(squares)}


app = restate.app([worker, fanout])
