"""A fault at every write point of the cron firing path: the ticks still fire exactly once.

A schedule every minute is created on a clean store; then five minutes pass under one engine on
a :class:`~backends.faults.FaultyBackend`, and one run per (write point, fault kind) injects the
fault there: the write fails, applies but reports a failure, or the process dies just before or
after it (a new engine takes over the store). After recovery and enough time for leases and
outbox items to fall due, the store must hold exactly one completed invocation per tick that
is due, and nothing left over.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from backends.api import Backend
from backends.faults import ALL_FAULTS, Crashed, FaultPlan, FaultyBackend
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from invoker import keys
from invoker import records as rec
from invoker.engine import Engine
from invoker.store import decode_invocation
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from tests.schedules import app
from tests.schedules.cluster import CONFIG as BASE

#: Short leases and backoffs, so that recovery fits between two ticks.
CONFIG = dataclasses.replace(
    BASE,
    attempt_timeout_s=5.0,
    lease_margin_ms=1_000,
    outbox_initial_backoff_ms=500,
    outbox_max_backoff_ms=2_000,
)

MINUTE = 60_000
T0 = 1_767_225_600_000
STEPS = 3


async def _engine(backend: Backend, clock: ManualClock) -> Engine:
    engine = Engine(backend, clock, Transports(), CONFIG)
    engine.transports.asgi.mount("sched", app.app)
    await engine.start()
    return engine


async def _settle(engine: Engine, faulty: FaultyBackend) -> None:
    for _ in range(100):
        if faulty.crashed and engine.backend is faulty:
            raise Crashed("crashed")
        await engine.tick()
        tasks = engine.pending()
        if not tasks:
            await asyncio.sleep(0)
            if not engine.pending():
                break
            continue
        await asyncio.wait(tasks, timeout=5)
    if faulty.crashed and engine.backend is faulty:
        raise Crashed("crashed")


async def _run(inner: Backend, plan: FaultPlan) -> tuple[FaultyBackend, list[str]]:
    app.calls.clear()
    clock = ManualClock(T0)
    setup = await _engine(inner, clock)
    await setup.register_deployment("asgi://sched")
    await setup.create_schedule({"id": "m", "cron": "* * * * *", "target": "Cron/tick"})
    await setup.close()
    faulty = FaultyBackend(inner, plan)
    engine = await _engine(faulty, clock)
    crashes = 0
    step = 0
    try:
        while step < STEPS + 5:
            try:
                # STEPS minutes of ticks, then time (before the next tick) for leases, backoffs
                # and outbox recovery to fall due.
                clock.advance(MINUTE if step < STEPS else 10_000)
                step += 1
                await _settle(engine, faulty)
            except Crashed:
                crashes += 1
                assert crashes < 3
                await engine.close()
                engine = await _engine(inner, clock)
                await _settle(engine, faulty)
        violations = await _check(inner, clock.now_ms())
    finally:
        await engine.close()
    return faulty, violations


async def _check(store: Backend, now: int) -> list[str]:
    out: list[str] = []
    due = [T0 + MINUTE * m for m in range(1, (now - T0) // MINUTE + 1)]
    want = {f"schedule/m/{t}" for t in due}
    got: list[str] = []
    for item in await store.scan(keys.INV_PREFIX, keys.META):
        inv = decode_invocation(item.value)
        if inv.service == "Cron" and inv.handler == "tick":
            got.append(inv.idempotency_key or "")
            if inv.status != rec.Status.COMPLETED:
                out.append(f"{inv.id} is {inv.status.value}")
        for left in await store.query(item.pk, keys.OUTBOX_PREFIX):
            out.append(f"outbox item left: {left.pk} {left.sk}")
    if sorted(got) != sorted(want):
        out.append(f"ticks {sorted(got)} != due {sorted(want)}")
    runs = [t for n, t, _ in app.calls if n == "Cron/tick"]
    if len(set(runs)) != len(due):
        out.append(f"handler ran for {len(set(runs))} distinct ticks, {len(due)} due")
    sched = await store.get(keys.schedule("m"), keys.META)
    assert sched is not None
    s = rec.decode(sched.value, rec.ScheduleRecord)
    if s.fired != len(due) or s.skipped:
        out.append(f"schedule counted fired={s.fired} skipped={s.skipped}, {len(due)} due")
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_fault_at_every_write_point(kind: str, tmp_path: Path) -> None:
    counter = iter(range(10_000))

    def make() -> Backend:
        if kind == "memory":
            return MemoryBackend()
        return SqliteBackend(tmp_path / f"db-{next(counter)}.sqlite")

    inner = make()
    probe, violations = await _run(inner, FaultPlan.counting())
    await inner.close()
    assert violations == []
    fire_points = [p for p in probe.points if p.key[0].startswith(keys.SCHEDULE_PREFIX)]
    assert len(fire_points) >= STEPS  # one commit per tick at least
    failures: list[str] = []
    runs = 0
    for plan in FaultPlan.each(probe.points, ALL_FAULTS):
        inner = make()
        try:
            _faulty, found = await _run(inner, plan)
        finally:
            await inner.close()
        runs += 1
        point = next(iter(plan.faults.items()))
        failures += [f"{point}: {v}" for v in found]
    assert runs >= len(ALL_FAULTS) * len(probe.points)
    print(f"{kind}: {runs} runs, {len(probe.points)} write points ({len(fire_points)} firing)")
    assert failures == [], "\n".join(failures[:40])
