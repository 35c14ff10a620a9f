"""The scenarios of the fault-injection suite (issue 7): each a list of client steps and its
own invariants, on top of :func:`tests.faults.harness.generic_checks`."""

from __future__ import annotations

import asyncio
import json

from invoker import records as rec
from invoker.api import ConflictingRequestError, Target
from tests.faults import app
from tests.faults.harness import Scenario, World, output, value

G = "FGreeter"


def _t(service: str, handler: str, key: str | None = None) -> Target:
    return Target(service, handler, key)


async def _retry(world: World, op: str, fn: object) -> None:
    """An admin or awakeable operation, retried by the client on errors."""
    for _ in range(3):
        try:
            await fn()  # type: ignore[operator]
            return
        except ConflictingRequestError:
            return  # e.g. already completed: nothing to do
        except Exception as exc:
            world.failed.append(f"{op}: {exc!r}")
            await world.settle()


# -- greet ------------------------------------------------------------------------------------


async def _greet(w: World) -> None:
    await w.call("greet", _t(G, "greet"), "x")


async def _greet_check(w: World) -> list[str]:
    out = []
    if "greet" in w.acked and value(w.acked["greet"]) != "Hello, x!":
        out.append(f"greet answered {w.acked['greet']}")
    for inv in await w.invocations(G, "greet"):
        if output(inv) != "Hello, x!":
            out.append(f"greet stored {inv.result}")
    return out


# -- idempotent call --------------------------------------------------------------------------


async def _idem(w: World) -> None:
    await w.call("first", _t(G, "steps"), 2, idem="k")
    await w.call("second", _t(G, "steps"), 2, idem="k")


async def _idem_check(w: World) -> list[str]:
    out = []
    invs = await w.invocations(G, "steps")
    if len(invs) > 1:
        out.append(f"idempotent call ran {len(invs)} times")
    answers = [value(w.acked[k]) for k in ("first", "second") if k in w.acked]
    if len({json.dumps(a) for a in answers}) > 1:
        out.append(f"idempotent call answered differently: {answers}")
    for inv in invs:
        steps = output(inv)
        if not isinstance(steps, list) or len(steps) != 2:
            out.append(f"steps output {steps!r}")
            continue
        for i, v in enumerate(steps):
            if v > app.effects.get(f"step-{i}", 0):
                out.append(f"step {i} result {v} was never produced")
        if answers and answers[0] != steps:
            out.append(f"answered {answers[0]} but stored {steps}")
    return out


# -- counter on a hot key ---------------------------------------------------------------------


async def _hot(w: World) -> None:
    await asyncio.gather(
        *(w.send(f"add-{n}", _t("FCounter", "add", "hot"), 1, idem=f"add-{n}") for n in range(5))
    )


async def _adds_applied_once_in_turn(
    w: World, key: str, handlers: tuple[str, ...] = ("add",)
) -> tuple[list[rec.Invocation], list[str]]:
    """The stored adds of ``FCounter/key`` (by 1 each), and violations: the count is not their
    number, or their results are not 1..n (each saw the one before it)."""
    adds = [i for h in handlers for i in await w.invocations("FCounter", h) if i.key == key]
    count = (await w.state("FCounter", key)).get("count", 0)
    out = []
    if count != len(adds):
        out.append(f"count is {count} after {len(adds)} completed adds")
    results = sorted(output(i) for i in adds)
    if results != list(range(1, len(adds) + 1)):
        out.append(f"add results {results}: not each applied once, in turn")
    return adds, out


async def _hot_check(w: World) -> list[str]:
    _adds, out = await _adds_applied_once_in_turn(w, "hot")
    return out


async def _sole(w: World) -> None:
    # Blocking calls on the store's only engine: each creates its invocation in its first
    # commit, one after the other (the adds complete in it: the lock is only checked; the slow
    # add suspends on its sleep and takes the lock); the send with an idempotency key waits
    # for that commit and queues behind the slow add.
    key = "sole"
    calls = asyncio.ensure_future(
        asyncio.gather(
            *(w.call(f"call-{n}", _t("FCounter", "add", key), 1) for n in range(3)),
            w.call("slow", _t("FCounter", "slow_add", key), 1),
        )
    )
    for _ in range(5):
        await asyncio.sleep(0)  # the calls reach the engine first
    try:
        await w.send("send", _t("FCounter", "add", key), 1, idem="send")
    finally:
        await calls


async def _sole_check(w: World) -> list[str]:
    adds, out = await _adds_applied_once_in_turn(w, "sole", ("add", "slow_add"))
    if not any(i.handler == "slow_add" for i in adds) and "slow" in w.acked:
        out.append("the acknowledged slow add is not stored")
    return out


# -- call + send + delayed send ---------------------------------------------------------------


async def _calls(w: World) -> None:
    await w.send("caller", _t(G, "caller"), "x", idem="c")


async def _calls_advance(w: World) -> None:
    await w.advance(10_000)


async def _calls_check(w: World) -> list[str]:
    out = []
    callers = await w.invocations(G, "caller")
    if len(callers) > 1:
        return [f"the caller was stored {len(callers)} times"]
    caller = callers[0] if callers else None
    if caller is None:
        return ["the caller was never stored"] if "caller" in w.acked else []
    if output(caller) != "called: Hello, x!":
        out.append(f"caller answered {caller.result}")
    for service, handler, expected in ((G, "greet", 1), (G, "nothing", 1), ("FCounter", "add", 1)):
        n = len(await w.invocations(service, handler))
        if n != expected:
            out.append(f"{service}/{handler} ran {n} times, expected {expected}")
    if app.effects.get("nothing", 0) < 1:
        out.append("the sent handler never ran")
    if (await w.state("FCounter", "sent")).get("count") != 1:
        out.append(f"delayed send applied: {await w.state('FCounter', 'sent')}")
    return out


# -- sleep ------------------------------------------------------------------------------------


async def _sleep(w: World) -> None:
    await w.send("sleepy", _t(G, "sleepy"), 5, idem="s")


async def _sleep_advance(w: World) -> None:
    await w.advance(5_000)


async def _sleep_check(w: World) -> list[str]:
    return [
        f"sleepy stored {i.result}" for i in await w.invocations(G, "sleepy") if output(i) != "woke"
    ]


# -- awakeable --------------------------------------------------------------------------------


async def _awk(w: World) -> None:
    await w.send("wait", _t("FAwaiter", "wait", "k"), None, idem="w")


async def _awk_resolve(w: World) -> None:
    awk = (await w.state("FAwaiter", "k")).get("awakeable")
    if awk is None:
        await w.advance(2_000)  # the handler has not got this far yet (after a crash)
        awk = (await w.state("FAwaiter", "k")).get("awakeable")
    if awk is not None:
        await _retry(w, "resolve", lambda: w.engine.resolve_awakeable(awk, b'"v"'))


async def _awk_check(w: World) -> list[str]:
    return [
        f"awaiter stored {i.result}"
        for i in await w.invocations("FAwaiter", "wait")
        if output(i) != "got v"
    ]


# -- workflow promise -------------------------------------------------------------------------


async def _wf(w: World) -> None:
    await w.send("run", _t("FSignup", "run", "id"), "a@b")


async def _wf_verify(w: World) -> None:
    await w.call("verify", _t("FSignup", "verify", "id"), "123", idem="v")


async def _wf_check(w: World) -> list[str]:
    out = []
    for inv in await w.invocations("FSignup", "run"):
        if output(inv) != "a@b verified with 123":
            out.append(f"workflow stored {inv.result}")
    if "run" in w.acked and not await w.invocations("FSignup", "verify"):
        out.append("verify was never stored")
    return out


# -- cancel with compensation -----------------------------------------------------------------


async def _cancel_start(w: World) -> None:
    await w.send("cancellable", _t(G, "cancellable"), None, idem="x")


async def _cancel(w: World) -> None:
    inv_id = w.ids.get("cancellable")
    if inv_id is not None:
        await _retry(w, "cancel", lambda: w.engine.manage_invocation(inv_id, "cancel"))


async def _cancel_check(w: World) -> list[str]:
    out = []
    for inv in await w.invocations(G, "cancellable"):
        failure = inv.result.failure if inv.result else None
        if failure is None or failure.code != 409:
            out.append(f"cancelled invocation stored {inv.result}")
        elif app.effects.get("compensated", 0) < 1:
            out.append("cancelled without compensating")
    return out


# -- admin kill -------------------------------------------------------------------------------


async def _kill_start(w: World) -> None:
    await w.send("slow", _t("FCounter", "slow_add", "k"), 1, idem="slow")
    await w.send("next", _t("FCounter", "add", "k"), 1, idem="next")


async def _kill(w: World) -> None:
    inv_id = w.ids.get("slow")
    if inv_id is not None:
        await _retry(w, "kill", lambda: w.engine.manage_invocation(inv_id, "kill"))


async def _kill_check(w: World) -> list[str]:
    out = []
    slow = await w.invocations("FCounter", "slow_add")
    killed = [i for i in slow if i.result and i.result.failure and i.result.failure.code == 409]
    adds = await w.invocations("FCounter", "add")
    expected = len(adds) + len(slow) - len(killed)
    count = (await w.state("FCounter", "k")).get("count", 0)
    if count != expected:
        out.append(f"count is {count}, expected {expected} (killed {len(killed)} of {len(slow)})")
    return out


# -- 100 sends in one attempt -----------------------------------------------------------------


async def _fan(w: World) -> None:
    await w.send("fan", _t(G, "fanout"), 100, idem="f")


async def _fan_check(w: World) -> list[str]:
    fan = await w.invocations(G, "fanout")
    if not fan:
        return ["fanout acknowledged but not stored"] if "fan" in w.acked else []
    if fan[0].status != rec.Status.COMPLETED or output(fan[0]) != 100:
        return [f"fanout stored {fan[0].result}"]
    adds = [i for i in await w.invocations("FCounter", "add") if i.key == "fan"]
    count = (await w.state("FCounter", "fan")).get("count", 0)
    out = []
    if len(adds) != 100:
        out.append(f"{len(adds)} sends created, expected 100")
    if count != 100:
        out.append(f"fan count {count}, expected 100")
    return out


# -- our SDK: steps and a send checkpointed in the middle of the attempt ------------------------


async def _ours(w: World) -> None:
    await w.send("osteps", _t("OSteps", "osteps"), 3, idem="o")
    await w.send("ocall", _t("OSteps", "ocall"), 1, idem="c")


async def _ours_check(w: World) -> list[str]:
    out = []
    for inv in await w.invocations("OSteps", "osteps"):
        steps = output(inv)
        if not isinstance(steps, list) or len(steps) != 3:
            out.append(f"osteps stored {inv.result}")
            continue
        for i, v in enumerate(steps):
            if v > app.effects.get(f"ostep-{i}", 0):
                out.append(f"step {i} result {v} was never produced")
    ocalls = await w.invocations("OSteps", "ocall")
    adds = [i for i in await w.invocations("FCounter", "add") if i.key == "ocall"]
    if ocalls and len(adds) != 1:
        out.append(f"the checkpointed send created {len(adds)} invocations")
    if ocalls and (await w.state("FCounter", "ocall")).get("count") != 1:
        out.append(f"the send applied: {await w.state('FCounter', 'ocall')}")
    return out


SCENARIOS = [
    Scenario("greet", [_greet], _greet_check),
    Scenario("idempotent call", [_idem], _idem_check),
    Scenario("counter, hot key", [_hot], _hot_check),
    Scenario("calls, sole engine", [_sole], _sole_check, sole=True),
    Scenario("call+send+delayed", [_calls, _calls_advance], _calls_check),
    Scenario("sleep", [_sleep, _sleep_advance], _sleep_check),
    Scenario("awakeable", [_awk, _awk_resolve], _awk_check),
    Scenario("workflow promise", [_wf, _wf_verify], _wf_check),
    Scenario("cancel+compensate", [_cancel_start, _cancel], _cancel_check),
    Scenario("admin kill", [_kill_start, _kill], _kill_check),
    Scenario("100 sends", [_fan], _fan_check),
    Scenario("our SDK, checkpoints", [_ours], _ours_check),
    Scenario("our SDK, checkpoints, sole", [_ours], _ours_check, sole=True),
]
