"""crash_everywhere: deterministic handlers pass; non-determinism and missing idempotency fail."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import restate

import restate_lambda
from restate_lambda.testing import Harness, crash_everywhere

ours = restate_lambda.VirtualObject("Orders")
theirs = restate.VirtualObject("Orders")

#: what the "payment provider" saw (reset before every run)
charges: list[str] = []
#: an in-memory cache that a crash does not reset: a handler must not trust it
seen: set[str] = set()


def charge(order: str) -> str:
    charges.append(order)
    return f"charged {order}"


def charge_once(order: str) -> str:
    if order not in charges:  # idempotent by order id, as a real provider's key would be
        charges.append(order)
    return f"charged {order}"


@ours.handler()
async def good(ctx: restate_lambda.ObjectContext, order: str) -> str:
    receipt = await ctx.run_typed("charge", charge_once, order=order)
    discount = ctx.random().randint(1, 10)
    await ctx.sleep(timedelta(hours=1))
    ctx.set("last", f"{receipt} -{discount}%")
    return receipt


@ours.handler()
async def dice(ctx: restate_lambda.ObjectContext, order: str) -> int:
    roll = random.randint(1, 1_000_000)  # outside ctx.run: differs on every attempt
    await ctx.run_typed("charge", charge_once, order=order)
    ctx.set("roll", roll)
    return roll


@ours.handler()
async def cached(ctx: restate_lambda.ObjectContext, order: str) -> str:
    if order not in seen:  # a decision from process memory: a retry in the same process differs
        seen.add(order)
        await ctx.run_typed("charge", charge_once, order=order)
    await ctx.run_typed("ship", lambda: "shipped")
    return "ok"


@ours.handler()
async def double_charge(ctx: restate_lambda.ObjectContext, order: str) -> str:
    return await ctx.run_typed("charge", charge, order=order)  # not idempotent


@theirs.handler(name="good")
async def theirs_good(ctx: restate.ObjectContext, order: str) -> str:
    receipt = await ctx.run_typed("charge", charge_once, order=order)
    discount = ctx.random().randint(1, 10)
    await ctx.sleep(timedelta(hours=1))
    ctx.set("last", f"{receipt} -{discount}%")
    return receipt


@theirs.handler(name="dice")
async def theirs_dice(ctx: restate.ObjectContext, order: str) -> int:
    roll = random.randint(1, 1_000_000)
    await ctx.run_typed("charge", charge_once, order=order)
    ctx.set("roll", roll)
    return roll


OURS = restate_lambda.app([ours])
THEIRS = restate.app([theirs])


def scenario_of(handler: str):  # type: ignore[no-untyped-def]
    async def scenario(h: Harness) -> object:
        inv = await h.send("Orders", handler, "o-1", key="alice")
        await h.advance(timedelta(hours=1))
        return await h.result(inv)

    return scenario


def reset() -> None:
    charges.clear()
    seen.clear()


@pytest.mark.parametrize("app", [OURS, THEIRS], ids=["ours", "theirs"])
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_deterministic_handler_passes(app: object, backend: str) -> None:
    """Steps, ctx.random and a sleep survive a crash after every entry."""
    report = await crash_everywhere(
        app, scenario_of("good"), backend=backend, reset=reset, observe=lambda: list(charges)
    )
    report.assert_ok()
    assert report.entries == 5  # run, its result, sleep, set state, output
    assert report.runs == report.entries + 2
    assert "Orders/good: RUN_COMMAND 'charge'" == report.entry_names[0]


@pytest.mark.parametrize("app", [OURS, THEIRS], ids=["ours", "theirs"])
async def test_random_outside_run_is_flagged(app: object) -> None:
    """random() outside ctx.run gives a different result and state: reported."""
    report = await crash_everywhere(app, scenario_of("dice"), reset=reset)
    assert not report.ok
    text = str(report)
    assert "not deterministic" in text and "state Orders/alice 'roll'" in text, text
    with pytest.raises(AssertionError, match="diverged"):
        report.assert_ok()


async def test_decision_from_process_memory_is_flagged_after_a_crash() -> None:
    """Two clean runs agree; the replay after a crash takes another branch: the journal
    diverges, and the report names the entry the crash came before."""
    report = await crash_everywhere(OURS, scenario_of("cached"), reset=reset)
    assert not report.ok
    first = report.divergences[0]
    assert first.cut_after is not None
    assert any("RUN_COMMAND 'charge' != RUN_COMMAND 'ship'" in d for d in first.differences), first


async def test_non_idempotent_step_is_flagged_by_observed_side_effects() -> None:
    """A crash after a step's action ran but before its result is journaled (in
    request-response mode the command and its result travel together) runs the action again:
    a non-idempotent charge shows up twice in the observed side effects."""
    report = await crash_everywhere(
        OURS, scenario_of("double_charge"), reset=reset, observe=lambda: list(charges)
    )
    assert [0, 1] == [d.cut_after for d in report.divergences], str(report)
    assert "RUN_COMMAND 'charge'" in report.divergences[0].where
    assert "PROPOSE_RUN_COMPLETION" in report.divergences[1].where
    assert "['o-1'] != ['o-1', 'o-1']" in str(report)
