"""Counter: a virtual object keyed by counter name, with exclusive writes and a shared read.

``curl localhost:8080/Counter/hits/add --json 5`` then ``curl localhost:8080/Counter/hits/get``.
"""

from __future__ import annotations

import restate_lambda as restate
from restate_lambda import ObjectContext, ObjectSharedContext

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    """Add ``delta`` to the counter and return the new value."""
    value = (await ctx.get("count", type_hint=int)) or 0
    value += delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    """The current value (0 if never set)."""
    return (await ctx.get("count", type_hint=int)) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    """Forget the counter."""
    ctx.clear_all()


app = restate.app([counter])
