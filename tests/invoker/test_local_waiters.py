"""Clients waiting in this process for an invocation (invoker/outcomes.py LocalWaiters): the
outcome committed here, or found by polling the store when another engine runs it."""

from __future__ import annotations

import asyncio

import pytest

from invoker import records as rec
from invoker.api import NotFoundError
from invoker.outcomes import LocalWaiters
from invoker.store import Versioned

INV = "inv_1c7Ehn9HOMiQ47aBoiw8d9CCk0cvF4vSGl"


class _Store:
    """Answers ``invocation`` from ``records`` (popping one per poll; the last stays)."""

    def __init__(self, *records: rec.Invocation | None) -> None:
        self.records = list(records)
        self.polls = 0
        self.polled_twice = asyncio.Event()

    async def invocation(self, inv_id: str) -> Versioned | None:
        self.polls += 1
        if self.polls >= 2:
            self.polled_twice.set()
        found = self.records[0] if len(self.records) == 1 else self.records.pop(0)
        return None if found is None else Versioned(found, 1)


def _inv(status: rec.Status, value: bytes | None = None) -> rec.Invocation:
    return rec.Invocation(
        id=INV,
        service="Greeter",
        handler="greet",
        status=status,
        result=None if value is None else rec.Result(value=value),
    )


def _waiters(store: _Store, *, driven_here: bool = False) -> LocalWaiters:
    return LocalWaiters(store, lambda _id: driven_here, poll_s=0.01)  # type: ignore[arg-type]


async def test_an_outcome_committed_here_reaches_the_waiter_without_a_poll() -> None:
    store = _Store(_inv(rec.Status.RUNNING))
    waiters = _waiters(store)
    waiters._poll_s = 60.0
    future = waiters.register(INV)
    waiting = asyncio.ensure_future(waiters.wait(INV, future))
    await asyncio.sleep(0)
    waiters.resolve(_inv(rec.Status.COMPLETED, b'"hi"'))
    outcome = await asyncio.wait_for(waiting, 5)
    assert outcome.ok and outcome.value == b'"hi"'
    assert store.polls == 0
    assert waiters._futures == {}


async def test_an_invocation_run_elsewhere_is_found_completed_by_polling() -> None:
    store = _Store(_inv(rec.Status.RUNNING), _inv(rec.Status.COMPLETED, b"7"))
    waiters = _waiters(store)
    outcome = await asyncio.wait_for(waiters.wait(INV, waiters.register(INV)), 5)
    assert outcome.value == b"7"
    assert store.polls == 2
    assert waiters._futures == {}


async def test_an_outcome_committed_here_after_a_poll_still_reaches_the_waiter() -> None:
    store = _Store(_inv(rec.Status.RUNNING))
    waiters = _waiters(store)
    waiting = asyncio.ensure_future(waiters.wait(INV, waiters.register(INV)))
    await asyncio.wait_for(store.polled_twice.wait(), 5)
    waiters.resolve(_inv(rec.Status.COMPLETED, b"8"))
    outcome = await asyncio.wait_for(waiting, 5)
    assert outcome.value == b"8"
    assert waiters._futures == {}


async def test_an_invocation_nobody_stored_is_not_found_unless_it_runs_here() -> None:
    nowhere = _waiters(_Store(None))
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(nowhere.wait(INV, nowhere.register(INV)), 5)
    assert nowhere._futures == {}
    store = _Store(None, None, _inv(rec.Status.COMPLETED, b"9"))
    waiters = _waiters(store, driven_here=True)
    outcome = await asyncio.wait_for(waiters.wait(INV, waiters.register(INV)), 5)
    assert outcome.value == b"9"


async def test_a_waiter_that_leaves_is_forgotten() -> None:
    waiters = _waiters(_Store(_inv(rec.Status.RUNNING)))
    waiting = asyncio.ensure_future(waiters.wait(INV, waiters.register(INV)))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiters._futures == {}
