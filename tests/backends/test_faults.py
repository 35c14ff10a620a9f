"""The fault-injecting wrapper (``backends/faults.py``), on the memory and SQLite backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.api import Backend, BackendUnavailableError, ConflictError, Item, Put
from backends.faults import ALL_FAULTS, Crashed, Fault, FaultPlan, FaultyBackend, WritePoint
from tests.backends.conftest import make_backend


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An empty memory or SQLite backend to wrap."""
    async with make_backend(request.param, tmp_path) as b:
        yield b


async def scenario(backend: Backend) -> None:
    """Three writes and a bulk delete, with reads in between (like an engine's attempt)."""
    await backend.write([Put("inv/1", "meta", b"ready"), Put("inv/1", "j/0", b"input")])
    meta = await backend.get("inv/1", "meta")
    assert meta is not None
    await backend.write(
        [Put("inv/1", "meta", b"done", expect=meta.version), Put("inv/1", "j/1", b"output")]
    )
    await backend.query("inv/1")
    await backend.write([Put("obj/a", "state", b"1", expect=None)])
    await backend.delete_items([("inv/1", "j/0"), ("inv/1", "j/1")])


async def dump(backend: Backend) -> dict[tuple[str, str], bytes]:
    """Every item of the scenario's partitions, by key."""
    items = [*await backend.query("inv/1"), *await backend.query("obj/a")]
    return {(i.pk, i.sk): i.value for i in items}


DONE = {("inv/1", "meta"): b"done", ("obj/a", "state"): b"1"}


async def test_counting_plan_records_every_write_point(inner: Backend) -> None:
    """Without faults the wrapper is transparent and numbers writes and bulk deletes only."""
    faulty = FaultyBackend(inner, FaultPlan.counting())
    await scenario(faulty)
    assert DONE == await dump(inner)
    assert [
        WritePoint(0, "write", "Put inv/|meta +1", ("inv/1", "meta")),
        WritePoint(1, "write", "Put inv/|meta +1", ("inv/1", "meta")),
        WritePoint(2, "write", "Put obj/|state", ("obj/a", "state")),
        WritePoint(3, "delete_items", "delete_items inv/|j/ +1", ("inv/1", "j/0")),
    ] == faulty.points
    assert [] == faulty.fired


async def test_counting_reads_too(inner: Backend) -> None:
    """With count_reads, get/query/due/scan are write points as well, in call order."""
    faulty = FaultyBackend(inner, FaultPlan.counting(count_reads=True))
    await scenario(faulty)
    await faulty.due(10, 5)
    await faulty.scan("inv/", "meta")
    assert ["write", "get", "write", "query", "write", "delete_items", "due", "scan"] == [
        p.operation for p in faulty.points
    ]
    assert list(range(8)) == [p.index for p in faulty.points]


async def test_fail_applies_nothing(inner: Backend) -> None:
    """A ``fail`` raises BackendUnavailableError before the inner backend sees the batch."""
    faulty = FaultyBackend(inner, FaultPlan.at(1, Fault.FAIL))
    await faulty.write([Put("p", "a", b"1")])
    with pytest.raises(BackendUnavailableError, match="not applied"):
        await faulty.write([Put("p", "a", b"2", expect=1)])
    assert Item("p", "a", b"1", 1) == await inner.get("p", "a")
    # Only that one point fails: the caller may retry, and the retry is point 2.
    await faulty.write([Put("p", "a", b"2", expect=1)])
    assert Item("p", "a", b"2", 2) == await faulty.get("p", "a")
    assert [(1, Fault.FAIL)] == [(p.index, p.fault) for p in faulty.fired]
    assert 3 == len(faulty.points)


async def test_ambiguous_applies_then_raises(inner: Backend) -> None:
    """An ``ambiguous`` fault applies the batch, then raises: a blind retry now conflicts."""
    faulty = FaultyBackend(inner, FaultPlan.at(0, "ambiguous"))
    with pytest.raises(BackendUnavailableError, match="applied, response lost"):
        await faulty.write([Put("p", "a", b"1"), Put("p", "b", b"2")])
    assert [Item("p", "a", b"1", 1), Item("p", "b", b"2", 1)] == await inner.query("p")
    with pytest.raises(ConflictError):
        await faulty.write([Put("p", "a", b"1"), Put("p", "b", b"2")])


async def test_ambiguous_bulk_delete(inner: Backend) -> None:
    """delete_items is a write point: ``ambiguous`` deletes and still raises."""
    await inner.write([Put("p", "a", b"1"), Put("p", "b", b"2")])
    faulty = FaultyBackend(inner, FaultPlan.at(0, Fault.AMBIGUOUS))
    with pytest.raises(BackendUnavailableError):
        await faulty.delete_items([("p", "a"), ("p", "b")])
    assert [] == await inner.query("p")


@pytest.mark.parametrize(("fault", "applied"), [("crash-before", False), ("crash-after", True)])
async def test_crash_kills_the_wrapper_not_the_store(
    inner: Backend, fault: str, applied: bool
) -> None:
    """A crash raises Crashed, applies the batch only after, and every later call raises too."""
    faulty = FaultyBackend(inner, FaultPlan.at(1, fault))
    await faulty.write([Put("p", "a", b"1")])
    with pytest.raises(Crashed):
        await faulty.write([Put("p", "b", b"2")])
    assert faulty.crashed
    assert (Item("p", "b", b"2", 1) if applied else None) == await inner.get("p", "b")
    for call in (
        faulty.get("p", "a"),
        faulty.query("p"),
        faulty.due(0, 1),
        faulty.scan("", "a"),
        faulty.write([Put("p", "c", b"3")]),
        faulty.delete_items([("p", "a")]),
    ):
        with pytest.raises(Crashed):
            await call
    assert 2 == len(faulty.points)  # calls after the crash are not write points
    await faulty.close()  # a crashed wrapper still closes, and leaves the store open
    # A new "process" on the same store sees exactly what was applied.
    survivor = FaultyBackend(inner)
    assert (["a", "b"] if applied else ["a"]) == [i.sk for i in await survivor.query("p")]
    await survivor.write([Put("p", "c", b"3")])


async def test_crash_after_a_failed_call(inner: Backend) -> None:
    """``crash-after`` at a write that conflicts still kills the process (nothing applied)."""
    await inner.write([Put("p", "a", b"1")])
    faulty = FaultyBackend(inner, FaultPlan.at(0, Fault.CRASH_AFTER))
    with pytest.raises(Crashed, match="ConflictError"):
        await faulty.write([Put("p", "a", b"again")])
    assert Item("p", "a", b"1", 1) == await inner.get("p", "a")
    assert faulty.crashed


async def test_crashed_is_not_an_exception(inner: Backend) -> None:
    """``except Exception`` (as in the engine's error handling) does not swallow a crash."""
    faulty = FaultyBackend(inner, FaultPlan.at(0, Fault.CRASH_BEFORE))
    assert not issubclass(Crashed, Exception)
    with pytest.raises(Crashed):
        try:
            await faulty.write([Put("p", "a", b"1")])
        except Exception:  # pragma: no cover - the point is that this does not run
            pytest.fail("Crashed was caught as an Exception")


async def test_crash_reaches_concurrent_tasks(inner: Backend) -> None:
    """Once one task crashed the process, the other tasks' next calls raise Crashed."""
    faulty = FaultyBackend(inner, FaultPlan.at(3, Fault.CRASH_BEFORE))
    outcomes: list[str] = []

    async def worker(n: int) -> None:
        try:
            for i in range(4):
                await faulty.write([Put(f"w{n}", f"{i}", b"v")])
            outcomes.append("finished")
        except Crashed:
            outcomes.append("crashed")

    await asyncio.gather(worker(0), worker(1))
    assert ["crashed", "crashed"] == outcomes
    assert 4 == len(faulty.points)
    assert 3 == len(await inner.query("w0")) + len(await inner.query("w1"))


async def test_read_faults_with_count_reads(inner: Backend) -> None:
    """Counted reads can fail (nothing read) or crash like writes."""
    await inner.write([Put("p", "a", b"1")])
    faulty = FaultyBackend(
        inner, FaultPlan({0: Fault.FAIL, 1: Fault.CRASH_AFTER}, count_reads=True)
    )
    with pytest.raises(BackendUnavailableError):
        await faulty.get("p", "a")
    with pytest.raises(Crashed):
        await faulty.query("p")


def test_capabilities_are_the_inner_backends(inner: Backend) -> None:
    """max_value_bytes, max_batch_ops and supports_expiry come from the wrapped backend."""
    faulty: Backend = FaultyBackend(inner)
    assert (inner.max_value_bytes, inner.max_batch_ops, inner.supports_expiry) == (
        faulty.max_value_bytes,
        faulty.max_batch_ops,
        faulty.supports_expiry,
    )


def test_plan_validation() -> None:
    """Negative indexes and unknown faults are rejected; names normalise to Fault."""
    with pytest.raises(ValueError):
        FaultPlan.at(-1, Fault.FAIL)
    with pytest.raises(ValueError):
        FaultPlan.at(0, "explode")
    assert {2: Fault.AMBIGUOUS} == dict(FaultPlan({2: "ambiguous"}).faults)  # type: ignore[dict-item]


async def test_enumerating_every_write_point(inner: Backend, tmp_path: Path) -> None:
    """The recipe of the module docstring: every point x every fault, then recovery.

    Recovery here is "run the scenario again, idempotently", as a restarted engine would; the
    invariant is that the store ends in the same state as after a run without faults.
    """
    probe = FaultyBackend(inner, FaultPlan.counting())
    await scenario(probe)
    expected = await dump(inner)
    plans = FaultPlan.each(probe.points)
    assert len(probe.points) * len(ALL_FAULTS) == len(plans)
    seen: set[tuple[int, Fault]] = set()
    for n, plan in enumerate(plans):
        async with make_backend("memory", tmp_path / str(n)) as store:
            faulty = FaultyBackend(store, plan)
            with contextlib.suppress(Crashed, BackendUnavailableError):
                await scenario(faulty)
            seen.update((p.index, p.fault) for p in faulty.fired if p.fault is not None)
            await recover(store)
            assert expected == await dump(store), plan
    assert {(i, f) for i in range(len(probe.points)) for f in ALL_FAULTS} == seen


async def recover(store: Backend) -> None:
    """Finish the scenario from whatever state a fault left (each step is idempotent)."""
    meta = await store.get("inv/1", "meta")
    if meta is None:
        await store.write([Put("inv/1", "meta", b"ready"), Put("inv/1", "j/0", b"input")])
        meta = await store.get("inv/1", "meta")
        assert meta is not None
    if meta.value == b"ready":
        await store.write(
            [Put("inv/1", "meta", b"done", expect=meta.version), Put("inv/1", "j/1", b"output")]
        )
    await store.write([Put("obj/a", "state", b"1", expect=None)])
    await store.delete_items([("inv/1", "j/0"), ("inv/1", "j/1")])
