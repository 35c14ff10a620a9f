"""Run a scenario with one fault injected at one write point, recover, check the invariants.

A *scenario* is a list of client steps (send, call, resolve, cancel, kill, advance time) run
against an engine on a :class:`~backends.faults.FaultyBackend`. When the fault is a crash, the
engine is dropped where it stands and a new one is started on the same store, as a restarted
process would; the client step that was interrupted is retried (clients retry, with the same
idempotency key). After the last step, time moves on until nothing is due, and the checks run
against the store itself:

* every acknowledged invocation exists and completed, with the result the scenario expects;
* nothing is stuck: every invocation completed;
* no outbox item is left (applied or dead), no virtual object key is locked or has a queue;
* the scenario's own checks: state updates applied once, callers got results, ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from backends.api import Backend
from backends.faults import Crashed, FaultPlan, FaultyBackend
from invoker import keys
from invoker import records as rec
from invoker.api import InvokeRequest, Outcome, SendResult, Target
from invoker.config import EngineConfig
from invoker.engine import Engine
from invoker.store import decode_invocation, decode_lock
from invoker.transport import Transports
from restate_lambda.clock import ManualClock, SystemClock
from tests.faults import app

#: Short timeouts so that recovery by lease expiry costs little (manual) time.
CONFIG = EngineConfig(
    attempt_timeout_s=5.0,
    lease_margin_ms=1_000,
    recovery_grace_ms=1_000,
    write_retries=0,  # every injected failure reaches the engine's own handling
    outbox_initial_backoff_ms=500,
    outbox_max_backoff_ms=5_000,
    outcome_poll_s=0.01,
)
#: After the last step, time jumps from one due item to the next (lease ends, backoffs, sleeps)
#: while anything falls due within this horizon (completed records wait a day for their purge).
_FINISH_HORIZON_MS = 3_600_000

Step = Callable[["World"], Awaitable[None]]
Check = Callable[["World"], Awaitable[list[str]]]


@dataclass
class Scenario:
    """Client steps and the scenario's own invariants."""

    name: str
    steps: list[Step]
    check: Check
    #: Engines started as the store's only engine (``restate-lambda dev`` on its own data
    #: directory): blocking calls to a free key then take its lock in their first commit.
    sole: bool = False


@dataclass
class World:
    """One run of a scenario: the store, the clock, the engine of the moment, what was acked."""

    inner: Backend
    faulty: FaultyBackend
    clock: ManualClock
    engine: Engine
    sole: bool = False
    crashes: int = 0
    acked: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    # -- time --------------------------------------------------------------------------------

    async def settle(self, rounds: int = 100) -> None:
        """Let in-flight attempts, effects and due work run to quiescence."""
        for _ in range(rounds):
            self._raise_if_crashed()
            if await self.engine.tick() >= self.engine.config.sweep_batch:
                continue  # more is due than one sweep takes
            tasks = self.engine.pending()
            if not tasks:
                await asyncio.sleep(0)
                if not self.engine.pending():
                    self._raise_if_crashed()
                    return
                continue
            await asyncio.wait(tasks, timeout=5)
        self._raise_if_crashed()

    async def advance(self, ms: int) -> None:
        """Move time forward and settle."""
        self.clock.advance(ms)
        await self.settle()

    async def finish(self) -> list[str]:
        """Let time pass until nothing falls due within the horizon (jumping from one due item
        to the next, as a real clock would get there).

        Returns a violation when one item stays overdue however often the engine sweeps: work
        that would keep a real sweeper busy forever (and a run that never ends here)."""
        overdue: tuple[str, str, int] | None = None
        sweeps = 0
        for _ in range(200):
            now = self.clock.now_ms()
            upcoming = await self.inner.due(now + _FINISH_HORIZON_MS, 1)
            if not upcoming or upcoming[0].due_ms is None:
                return []
            item = upcoming[0]
            if item.due_ms is not None and item.due_ms <= now:
                key = (item.pk, item.sk, item.due_ms)
                sweeps = sweeps + 1 if key == overdue else 1
                overdue = key
                if sweeps >= 20:
                    return [
                        f"{item.pk}|{item.sk} stays due at {item.due_ms} ({now - item.due_ms} ms "
                        f"overdue) after {sweeps} sweeps: {_describe(item.value)}"
                    ]
            await self.advance(max(1, (item.due_ms or now) - now))
        return []

    def _raise_if_crashed(self) -> None:
        if self.faulty.crashed and self.engine.backend is self.faulty:
            raise Crashed("the engine's process crashed")

    # -- client operations -------------------------------------------------------------------

    async def send(self, label: str, target: Target, body: Any, idem: str | None = None) -> None:
        """A one-way send, retried by the client on an error when it has an idempotency key."""
        request = _request(target, body, idem)
        result = await self._with_retries(
            label, lambda: self.engine.send(request), idem is not None
        )
        if isinstance(result, SendResult):
            self.acked[label] = result
            self.ids[label] = result.invocation_id

    async def call(self, label: str, target: Target, body: Any, idem: str | None = None) -> None:
        """A blocking call (for handlers that finish without waiting for time or input)."""
        request = _request(target, body, idem)
        result = await self._with_retries(
            label, lambda: self.engine.call(request), idem is not None
        )
        if isinstance(result, Outcome):
            self.acked[label] = result
            self.ids[label] = result.invocation_id

    async def _with_retries(self, label: str, op: Callable[[], Awaitable[Any]], retry: bool) -> Any:
        for _ in range(3 if retry else 1):
            try:
                return await self._while_time_passes(op())
            except Exception as exc:  # the client sees an error status: not acknowledged
                self.failed.append(f"{label}: {exc!r}")
                await self.settle()
        return None

    async def _while_time_passes(self, coro: Awaitable[Any]) -> Any:
        """Await a client operation while (manual) time goes on, as it would for a real client:
        retries and backoffs inside the engine fall due meanwhile."""
        task = asyncio.ensure_future(coro)
        try:
            for _ in range(200):
                done, _ = await asyncio.wait({task}, timeout=0.01)
                if done:
                    return task.result()
                self._raise_if_crashed()
                self.clock.advance(500)
                await self.engine.tick()
            raise TimeoutError("the client operation did not finish within 100 s")
        finally:
            if not task.done():
                task.cancel()

    async def stored(self, inv_id: str) -> rec.Invocation | None:
        """An invocation as stored (read past the faults)."""
        item = await self.inner.get(keys.inv(inv_id), keys.META)
        return decode_invocation(item.value) if item is not None else None

    async def state(self, service: str, key: str) -> dict[str, Any]:
        """An object's state as stored, JSON-decoded."""
        item = await self.inner.get(keys.obj(service, key), keys.STATE)
        if item is None:
            return {}
        entries = rec.decode(item.value, rec.StateRecord).entries
        return {k: json.loads(v) for k, v in entries.items()}

    async def invocations(self, service: str, handler: str) -> list[rec.Invocation]:
        """Every stored invocation of ``service/handler``."""
        out = []
        for item in await self.inner.scan(keys.INV_PREFIX, keys.META):
            inv = decode_invocation(item.value)
            if inv.service == service and inv.handler == handler:
                out.append(inv)
        return out


def _request(target: Target, body: Any, idem: str | None) -> InvokeRequest:
    return InvokeRequest(
        target=target,
        body=b"" if body is None else json.dumps(body).encode(),
        headers=[("content-type", "application/json")] if body is not None else [],
        content_type="application/json" if body is not None else None,
        idempotency_key=idem,
    )


def value(result: Any) -> Any:
    """The JSON value of an acknowledged call's outcome."""
    assert isinstance(result, Outcome)
    return json.loads(result.value) if result.ok and result.value else None


def output(inv: rec.Invocation | None) -> Any:
    """The JSON output of a stored, completed invocation (None otherwise)."""
    if inv is None or inv.result is None or inv.result.value is None:
        return None
    return json.loads(inv.result.value) if inv.result.value else None


async def _start(backend: Backend, clock: ManualClock, sole: bool = False) -> Engine:
    engine = Engine(backend, clock, Transports(), CONFIG, sole=sole)
    engine.transports.asgi.mount("faults", app.app)
    engine.transports.asgi.mount("ours", app.ours_app)
    await engine.start()
    return engine


async def fresh_store(make: Callable[[], Backend], clock: ManualClock) -> Backend:
    """A store with the scenarios' deployment registered (before any fault)."""
    inner = make()
    setup = await _start(inner, clock)
    await setup.register_deployment("asgi://faults")
    await setup.register_deployment("asgi://ours")
    await setup.close()
    return inner


async def run(
    scenario: Scenario, plan: FaultPlan, make: Callable[[], Backend]
) -> tuple[FaultyBackend, list[str]]:
    """Run ``scenario`` under ``plan``; return the faulty wrapper and the violations found."""
    app.effects.clear()
    clock = ManualClock(SystemClock().now_ms())  # the SDK computes wake-up times from wall time
    inner = await fresh_store(make, clock)
    faulty = FaultyBackend(inner, plan)
    world = World(inner, faulty, clock, await _start(faulty, clock, scenario.sole), scenario.sole)
    try:
        for step in scenario.steps:
            while True:
                try:
                    await step(world)
                    await world.settle()
                    break
                except Crashed:
                    await _recover(world)
        while True:
            try:
                stuck = await world.finish()
                break
            except Crashed:
                await _recover(world)
        violations = stuck + await generic_checks(world) + await scenario.check(world)
    finally:
        await world.engine.close()
        await inner.close()
    return faulty, violations


async def _recover(world: World) -> None:
    """The process died: drop its engine, start a new one on the same store."""
    world.crashes += 1
    assert world.crashes < 5, "crashed again after recovery"
    await world.engine.close()
    world.engine = await _start(world.inner, world.clock, world.sole)
    # Whatever the dead engine held is released when its lease ends.
    await world.advance(int(CONFIG.attempt_timeout_s * 1000) + CONFIG.lease_margin_ms + 1_000)


async def generic_checks(world: World) -> list[str]:
    """Invariants every scenario must hold after recovery."""
    out: list[str] = []
    for label, result in world.acked.items():
        inv = await world.stored(result.invocation_id)
        if inv is None:
            out.append(f"acknowledged {label} ({result.invocation_id}) is not stored")
        elif inv.status != rec.Status.COMPLETED:
            out.append(f"acknowledged {label} is {inv.status.value}, not completed")
    for item in await world.inner.scan(keys.INV_PREFIX, keys.META):
        inv = decode_invocation(item.value)
        if inv.status != rec.Status.COMPLETED:
            out.append(f"stuck: {inv.service}/{inv.handler} {inv.id} is {inv.status.value}")
        for left in await world.inner.query(item.pk, keys.OUTBOX_PREFIX):
            out.append(f"outbox item left: {left.pk} {left.sk}")
    if await world.inner.query(keys.DEAD_OUTBOX):
        out.append("dead outbox items")
    for item in await world.inner.scan("obj/", keys.LOCK):
        lock = decode_lock(item.value)
        if lock.holder is not None or lock.head != lock.tail:
            out.append(f"key left locked or queued: {item.pk} {lock}")
    return out


def _describe(value: bytes) -> str:
    """A short, printable view of a stored value (for a violation's message)."""
    try:
        return repr(msgspec.msgpack.decode(value))[:300]
    except Exception:
        return repr(value[:120])
