"""Handlers of the lifecycle tests: named signals and retry policies, in both SDKs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import restate

import restate_lambda as ours

attempts: dict[str, int] = {}

# -- our SDK -----------------------------------------------------------------------------------

waiter = ours.Service("Waiter")


@waiter.handler()
async def wait(ctx: ours.Context) -> str:
    """Awaits the named signal ``go``; a rejection fails the invocation."""
    return str(await ctx.signal("go", type_hint=str))


signaller = ours.Service("Signaller")


@signaller.handler()
async def resolve(ctx: ours.Context, req: dict[str, Any]) -> None:
    ctx.resolve_signal(req["id"], "go", req["value"])


@signaller.handler()
async def reject(ctx: ours.Context, req: dict[str, Any]) -> None:
    ctx.reject_signal(req["id"], "go", req["message"], 418)


steps = ours.Service("LSteps")


@steps.handler()
async def run(ctx: ours.Context, n: int) -> list[int]:
    out = []
    for i in range(n):
        out.append(await ctx.run_typed(f"s{i}", lambda i=i: _bump(f"s{i}")))
    return out


def _bump(name: str) -> int:
    attempts[name] = attempts.get(name, 0) + 1
    return attempts[name]


gated = ours.Service("Gated")
#: Set by a test to let ``Gated/hold``'s step finish; ``gate_entered`` is set once it started.
gate = asyncio.Event()
gate_entered = asyncio.Event()


@gated.handler()
async def hold(ctx: ours.Context) -> str:
    """One step that waits for the test's gate: the attempt stays running meanwhile."""

    async def wait_for_gate() -> str:
        gate_entered.set()
        await gate.wait()
        return "through"

    return str(await ctx.run_typed("hold", wait_for_gate))


ours_app = ours.app(services=[waiter, signaller, steps, gated])

# -- the official SDK --------------------------------------------------------------------------

owaiter = restate.Service("OWaiter")


@owaiter.handler()
async def owait(ctx: restate.Context) -> str:
    return str(await ctx.signal("go", type_hint=str))


osignaller = restate.Service("OSignaller")


@osignaller.handler()
async def oresolve(ctx: restate.Context, req: dict[str, Any]) -> None:
    ctx.resolve_signal(req["id"], "go", req["value"])


kill_policy = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    max_attempts=3,
    on_max_attempts="kill",
)
pause_policy = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    max_attempts=3,
    on_max_attempts="pause",
)
flaky = restate.Service("Flaky")


@flaky.handler(invocation_retry_policy=kill_policy)
async def killed(ctx: restate.Context) -> str:
    attempts["killed"] = attempts.get("killed", 0) + 1
    raise RuntimeError("always")


@flaky.handler(invocation_retry_policy=pause_policy)
async def paused(ctx: restate.Context) -> str:
    attempts["paused"] = attempts.get("paused", 0) + 1
    if attempts["paused"] <= 3:
        raise RuntimeError("three times")
    return "fixed"


retention = restate.Service(
    "Retained", journal_retention=timedelta(hours=1), idempotency_retention=timedelta(hours=2)
)


@retention.handler()
async def keep(ctx: restate.Context) -> str:
    return "kept"


long_journal = restate.Service(
    "LongJournal", journal_retention=timedelta(hours=3), idempotency_retention=timedelta(hours=1)
)


@long_journal.handler()
async def keep_long(ctx: restate.Context) -> str:
    return "kept"


official_app = restate.app(services=[owaiter, osignaller, flaky, retention, long_journal])
