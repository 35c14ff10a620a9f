"""Handlers written with ``restate_lambda`` for the web UI and logging tests: state with
characters HTML must escape, a durable sleep, a success, and a failure in handler code."""

from __future__ import annotations

from datetime import timedelta

import restate_lambda as restate

cart = restate.VirtualObject("Cart")
desk = restate.Service(
    "Desk",
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=200), max_interval=timedelta(seconds=1)
    ),
)
log = restate.getLogger("desk")


@cart.handler()
async def add(ctx: restate.ObjectContext, item: str) -> list[str]:
    """Appends ``item`` to the cart's ``items``; notes something HTML-like."""
    items: list[str] = await ctx.get("items", type_hint=list[str]) or []
    items.append(item)
    ctx.set("items", items)
    ctx.set("note", "<b>not bold</b> & 'quoted'")
    return items


@desk.handler()
async def nap(ctx: restate.Context, hours: int) -> str:
    """Sleeps ``hours`` hours (suspended, with a wake-up time)."""
    await ctx.sleep(timedelta(hours=hours), name="nap")
    return "rested"


@desk.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    """Succeeds at once; logs once though it may be replayed."""
    log.info("greeting %s", name)
    value = await ctx.run_typed("shout", lambda: name.upper())
    return f"Hello, {value}!"


@desk.handler()
async def file(ctx: restate.Context, name: str) -> str:
    """Fails on every attempt in handler code (not in a ``ctx.run``)."""
    await ctx.run_typed("read", lambda: name)
    raise RuntimeError(f"no drawer for {name}")


app = restate.app([cart, desk])
