"""Extra handlers (written for restate_lambda) for the runtime scenarios: combinators,
non-determinism, a 5-step handler that counts its invocations, and the charge scenario."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from typing import Any

import restate_lambda as restate
from restate_lambda import Context, RetryableError

combo = restate.Service("Combo")
nondet = restate.Service("NonDet")


def _log(tag: str, what: str) -> str:
    root = os.environ["E2E_EFFECTS_DIR"]
    with open(os.path.join(root, f"{tag}.log"), "a") as f:
        f.write(what + "\n")
    return what


def _count(tag: str, what: str) -> int:
    try:
        with open(os.path.join(os.environ["E2E_EFFECTS_DIR"], f"{tag}.log")) as f:
            return sum(1 for line in f.read().splitlines() if line == what)
    except FileNotFoundError:
        return 0


@combo.handler()
async def race(ctx: Context, tag: str) -> dict[str, Any]:
    """gather two steps, then race a short timer against an awakeable nobody resolves."""
    a = ctx.run_typed("a", lambda: "A")
    b = ctx.run_typed("b", lambda: "B")
    await restate.gather(a, b)
    _, never = ctx.awakeable(type_hint=str)
    winner, _ = await restate.select(timer=ctx.sleep(timedelta(milliseconds=100)), never=never)
    done, _pending = await restate.wait_completed(ctx.run_typed("c", lambda: "C"))
    return {"gathered": [await a, await b], "winner": winner, "done": len(done)}


@combo.handler()
async def five_steps(ctx: Context, tag: str) -> list[str]:
    """Five journaled steps; every invocation of the handler body is logged as ``body``."""
    _log(tag, "body")
    return [
        await ctx.run_typed(f"step-{i}", _log, restate.RunOptions(), tag, f"step-{i}")
        for i in range(5)
    ]


@nondet.handler()
async def run(ctx: Context, tag: str) -> str:
    """Journals a step whose name changes between attempts: the retry must fail with 570."""
    attempt = _count(tag, "attempt")
    _log(tag, "attempt")
    await ctx.run_typed(f"step-{attempt}", lambda: "x")
    if attempt == 0:
        raise RetryableError("force a retry", retry_after=timedelta(milliseconds=10))
    return "unreachable"


charge = restate.Service("Charge")

#: The attempt timeout of the charge scenario: restate-server aborts an attempt that sent
#: nothing for inactivity + abort timeout (2 s here); the slow step sleeps longer the first time.
ATTEMPT_TIMEOUT = {
    "inactivity_timeout": timedelta(seconds=1),
    "abort_timeout": timedelta(seconds=1),
}
SLOW_FIRST_S = 4.0


async def _slow(tag: str) -> str:
    first = _count(tag, "slow") == 0
    _log(tag, "slow")
    if first:
        await asyncio.sleep(SLOW_FIRST_S)
    return "done"


@charge.handler(**ATTEMPT_TIMEOUT)
async def pay(ctx: Context, tag: str) -> str:
    """Draw an idempotency key, charge with it, then a step that outlives the first attempt."""
    key = await ctx.run_typed("key", lambda: str(uuid.uuid4()))
    await ctx.run_typed("charge", _log, restate.RunOptions(), tag, f"charge {key}")
    await ctx.run_typed("slow", _slow, restate.RunOptions(), tag)
    return key


EXTRA = [combo, nondet, charge]
