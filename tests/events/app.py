"""A virtual object that events are applied to (our SDK, in process)."""

from __future__ import annotations

from typing import Any

import restate_lambda as restate

#: (key, seq, headers) of every execution of ``Groups/apply`` in this process.
applied: list[tuple[str, Any, dict[str, str]]] = []

groups = restate.VirtualObject("Groups")


@groups.handler()
async def apply(ctx: restate.ObjectContext, event: dict[str, Any]) -> int:
    """Appends the event's ``seq`` to the key's list ``seen``."""
    seen = (await ctx.get("seen", type_hint=list)) or []
    seen.append(event.get("seq"))
    ctx.set("seen", seen)
    applied.append((ctx.key(), event.get("seq"), dict(ctx.request().headers)))
    return len(seen)


sink = restate.Service("Sink")


@sink.handler()
async def take(ctx: restate.Context, event: Any) -> None:
    applied.append(("", event, dict(ctx.request().headers)))


app = restate.app(services=[groups, sink])
