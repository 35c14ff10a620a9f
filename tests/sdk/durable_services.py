"""Handlers for the in-process durability tests: the charge flow, numbered steps, a race.

``EVENTS`` records side effects in order; ``HOOKS.slow_started`` (an ``asyncio.Event`` set by a
test) is set by the first execution of the slow step, which then never finishes on its own: the
test's runtime kills that attempt, as an attempt timeout or a Lambda deadline would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import restate_lambda as restate
from restate_lambda import Context

EVENTS: list[str] = []


class HOOKS:
    """Test hooks (class attributes, reset by the tests)."""

    slow_started: asyncio.Event | None = None
    #: Called by every execution of a numbered step (tests advance a fake clock with it).
    on_step: Callable[[], None] | None = None


pay_svc = restate.Service("Pay")


def charge(key: str) -> str:
    """The side effect that must happen once, with the idempotency key drawn before it."""
    EVENTS.append(f"charge {key}")
    return "charged"


async def slow() -> str:
    """A step that outlives the attempt the first time it runs."""
    EVENTS.append("slow")
    if EVENTS.count("slow") == 1 and HOOKS.slow_started is not None:
        HOOKS.slow_started.set()
        await asyncio.Event().wait()
    return "done"


@pay_svc.handler()
async def pay(ctx: Context, order: str) -> str:
    """Draw an idempotency key, charge with it, then run a slow step."""
    key = await ctx.run_typed("key", lambda: str(uuid.uuid4()))
    await ctx.run_typed("charge", charge, restate.RunOptions(), key)
    await ctx.run_typed("slow", slow)
    return key


def record(what: str) -> str:
    """Record a step's execution."""
    EVENTS.append(what)
    if HOOKS.on_step is not None:
        HOOKS.on_step()
    return what


@pay_svc.handler()
async def steps(ctx: Context, n: int) -> list[str]:
    """``n`` numbered steps, each recorded when it executes."""
    return [
        await ctx.run_typed(f"step-{i}", record, restate.RunOptions(), f"s{i}") for i in range(n)
    ]


@pay_svc.handler()
async def race(ctx: Context) -> str:
    """A timer races a step: the winner is whichever the journal completed first."""
    timer = ctx.sleep(timedelta(hours=1))
    step = ctx.run_typed("step", lambda: "ran")
    winner, _ = await restate.select(timer=timer, step=step)
    return str(winner)


SERVICES = [pay_svc]
