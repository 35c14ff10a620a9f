"""A blocking call to a free virtual object key on the store's only engine (``sole``, as
``restate-lambda dev`` on its own data directory): the invocation is created, and the key's lock
taken or checked, by its first commit: one write for a call that completes at once. Crashes and
storage faults at each of those writes are the fault table's "calls, sole engine"."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from backends.api import Backend, Put
from backends.faults import Fault, FaultPlan, FaultyBackend
from backends.memory import MemoryBackend
from invoker import keys
from invoker import records as rec
from invoker.api import InvokeRequest, Target, UnavailableError
from invoker.config import EngineConfig
from invoker.engine import Engine
from invoker.store import decode_invocation, decode_lock
from invoker.transport import Transports
from restate_lambda.clock import ManualClock, SystemClock
from tests.faults import app

CONFIG = EngineConfig(attempt_timeout_s=5.0, lease_margin_ms=1_000, write_retries=0)


def _req(handler: str, key: str, n: int, idem: str | None = None) -> InvokeRequest:
    return InvokeRequest(
        target=Target("FCounter", handler, key),
        body=json.dumps(n).encode(),
        headers=[("content-type", "application/json")],
        idempotency_key=idem,
    )


async def _engine(backend: Backend, clock: ManualClock, *, sole: bool) -> Engine:
    engine = Engine(backend, clock, Transports(), CONFIG, sole=sole)
    engine.transports.asgi.mount("faults", app.app)
    await engine.start()
    return engine


async def _registered(inner: Backend, clock: ManualClock) -> None:
    setup = await _engine(inner, clock, sole=False)
    await setup.register_deployment("asgi://faults")
    await setup.close()


async def _lock(backend: Backend, key: str) -> rec.LockRecord | None:
    item = await backend.get(keys.obj("FCounter", key), keys.LOCK)
    return decode_lock(item.value) if item is not None else None


async def _count(backend: Backend, key: str) -> Any:
    item = await backend.get(keys.obj("FCounter", key), keys.STATE)
    assert item is not None
    return json.loads(rec.decode(item.value, rec.StateRecord).entries["count"])


@pytest.fixture(autouse=True)
def _clear_effects() -> None:
    app.effects.clear()


@pytest.mark.parametrize(("sole", "writes"), [(True, 1), (False, 2)])
async def test_a_call_that_completes_at_once_is_one_write_on_a_sole_engine(
    sole: bool, writes: int
) -> None:
    inner = MemoryBackend()
    clock = ManualClock(SystemClock().now_ms())
    await _registered(inner, clock)
    faulty = FaultyBackend(inner, FaultPlan.counting())
    engine = await _engine(faulty, clock, sole=sole)
    try:
        for n in (1, 2):
            before = len(faulty.points)
            outcome = await engine.call(_req("add", "k", 1))
            assert outcome.ok and json.loads(outcome.value) == n
            assert len(faulty.points) - before == writes
        assert await _count(inner, "k") == 2
        lock = await _lock(inner, "k")
        assert lock is None or (lock.holder is None and lock.head == lock.tail)
    finally:
        await engine.close()


async def test_calls_on_one_key_run_one_at_a_time_and_a_send_queues_behind_a_suspended_one() -> (
    None
):
    inner = MemoryBackend()
    clock = ManualClock(SystemClock().now_ms())
    await _registered(inner, clock)
    engine = await _engine(inner, clock, sole=True)
    try:
        slow = asyncio.ensure_future(engine.call(_req("slow_add", "k", 10)))
        adds = [asyncio.ensure_future(engine.call(_req("add", "k", 1))) for _ in range(3)]
        for _ in range(50):  # the slow add suspends on its 5 s sleep, holding the key
            await asyncio.sleep(0)
            lock = await _lock(inner, "k")
            if lock is not None and lock.holder is not None:
                break
        lock = await _lock(inner, "k")
        assert lock is not None and lock.holder is not None
        holder = await inner.get(keys.inv(lock.holder), keys.META)
        assert holder is not None
        assert decode_invocation(holder.value).handler == "slow_add"
        assert decode_invocation(holder.value).status == rec.Status.SUSPENDED

        sent = await asyncio.wait_for(engine.send(_req("add", "k", 100, idem="s")), 5)
        queued = await inner.get(keys.inv(sent.invocation_id), keys.META)
        assert queued is not None
        assert decode_invocation(queued.value).status == rec.Status.INBOXED

        for _ in range(20):
            clock.advance(1_000)
            await engine.tick()
            await asyncio.sleep(0.01)
            if slow.done() and all(a.done() for a in adds):
                break
        outcome = await slow
        assert outcome.ok and json.loads(outcome.value) == 10
        results = sorted(json.loads(o.value) for o in await asyncio.gather(*adds))
        for _ in range(100):
            if await _count(inner, "k") == 113:
                break
            await asyncio.sleep(0.01)
        # Each add saw the one before it: nothing ran concurrently, nothing was lost.
        assert await _count(inner, "k") == 113
        assert len(set(results)) == 3 and all(r > 10 for r in results)
        lock = await _lock(inner, "k")
        assert lock is not None and lock.holder is None and lock.head == lock.tail
    finally:
        await engine.close()


@pytest.mark.parametrize("fault", [Fault.FAIL, Fault.AMBIGUOUS])
async def test_a_failed_first_commit_leaves_the_key_free_for_the_next_call(fault: Fault) -> None:
    inner = MemoryBackend()
    clock = ManualClock(SystemClock().now_ms())
    await _registered(inner, clock)
    engine = await _engine(FaultyBackend(inner, FaultPlan.at(0, fault)), clock, sole=True)
    try:
        try:
            first = await asyncio.wait_for(engine.call(_req("add", "k", 1)), 5)
        except UnavailableError:
            first = None  # FAIL: nothing stored, the client got an error
        outcome = await asyncio.wait_for(engine.call(_req("add", "k", 1)), 5)
        assert outcome.ok
        expected = 1 if first is None else 2
        assert json.loads(outcome.value) == expected
        assert await _count(inner, "k") == expected
    finally:
        await engine.close()


async def test_a_first_commit_refused_on_the_lock_fails_the_call_once_and_frees_the_key() -> None:
    """The lock changed behind the engine's cached copy (on a sole engine only a bug or a
    foreign writer could do that): the deferred creation's check fails, the client gets an
    error at once (no retry loop re-running the handler), and the next call works."""
    inner = MemoryBackend()
    clock = ManualClock(SystemClock().now_ms())
    await _registered(inner, clock)
    engine = await _engine(inner, clock, sole=True)
    opk = keys.obj("FCounter", "k")
    try:
        # A call that suspends takes the lock; its completion hands it on (free): the engine
        # has written the lock record twice and caches what it wrote.
        slow = asyncio.ensure_future(engine.call(_req("slow_add", "k", 10)))
        for _ in range(40):
            clock.advance(500)
            await engine.tick()
            await asyncio.sleep(0.01)
            if slow.done():
                break
        assert json.loads((await slow).value) == 10
        stored = await inner.get(opk, keys.LOCK)
        assert stored is not None and decode_lock(stored.value).holder is None
        # Someone else writes the record: the engine's copy is now stale.
        await inner.write([Put(opk, keys.LOCK, stored.value, expect=stored.version)])
        runs = len(app.effects)
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(engine.call(_req("add", "k", 1)), 5)
        assert len(app.effects) == runs  # (the handler has no side effects to repeat)
        outcome = await asyncio.wait_for(engine.call(_req("add", "k", 1)), 5)
        assert json.loads(outcome.value) == 11
        assert await _count(inner, "k") == 11
    finally:
        await engine.close()


@pytest.mark.parametrize("sole", [True, False])
async def test_state_set_around_a_checkpointed_step_commits_in_one_attempt(sole: bool) -> None:
    """Our SDK in process checkpoints the step, state included; the attempt's end then commits
    on top of that state (created by the checkpoint on a sole engine, stored before otherwise)."""
    inner = MemoryBackend()
    clock = ManualClock(SystemClock().now_ms())
    setup = await _engine(inner, clock, sole=False)
    setup.transports.asgi.mount("ours", app.ours_app)
    await setup.register_deployment("asgi://ours")
    await setup.close()
    engine = await _engine(inner, clock, sole=sole)
    engine.transports.asgi.mount("ours", app.ours_app)
    try:
        for expected in (2, 4):
            request = InvokeRequest(
                target=Target("OCounter", "oadd", "k"),
                body=b"1",
                headers=[("content-type", "application/json")],
            )
            outcome = await asyncio.wait_for(engine.call(request), 5)
            assert outcome.ok and json.loads(outcome.value) == expected
            stored = await inner.get(keys.inv(outcome.invocation_id), keys.META)
            assert stored is not None
            inv = decode_invocation(stored.value)
            assert inv.last_failure is None, inv.last_failure  # no attempt failed on the way
        state = await inner.get(keys.obj("OCounter", "k"), keys.STATE)
        assert state is not None
        assert json.loads(rec.decode(state.value, rec.StateRecord).entries["count"]) == 4
        assert app.effects.get("oadd-bump") == 2  # the step ran once per call
    finally:
        await engine.close()


class _LockReads(MemoryBackend):
    """Counts point reads of lock records."""

    def __init__(self) -> None:
        super().__init__()
        self.lock_reads = 0

    async def get(self, pk: str, sk: str) -> Any:
        if sk == keys.LOCK:
            self.lock_reads += 1
        return await super().get(pk, sk)


async def test_a_sole_engine_reads_a_missing_lock_record_once() -> None:
    """Calls that complete at once never write the key's lock record; a sole engine remembers
    that it has none, and still sees the record once a call that suspends takes the lock."""
    inner = _LockReads()
    clock = ManualClock(SystemClock().now_ms())
    await _registered(inner, clock)
    engine = await _engine(inner, clock, sole=True)
    try:
        for n in (1, 2, 3):
            outcome = await engine.call(_req("add", "k", 1))
            assert json.loads(outcome.value) == n
        assert inner.lock_reads == 1
        assert await _lock(inner, "k") is None
        slow = asyncio.ensure_future(engine.call(_req("slow_add", "k", 10)))
        for _ in range(50):  # it suspends on its sleep, holding the key
            await asyncio.sleep(0)
            lock = await _lock(inner, "k")
            if lock is not None and lock.holder is not None:
                break
        queued = asyncio.ensure_future(engine.call(_req("add", "k", 100)))
        for _ in range(40):
            clock.advance(500)
            await engine.tick()
            await asyncio.sleep(0.01)
            if slow.done() and queued.done():
                break
        assert json.loads((await slow).value) == 13
        assert json.loads((await queued).value) == 113
        outcome = await engine.call(_req("add", "k", 1))
        assert json.loads(outcome.value) == 114
    finally:
        await engine.close()
