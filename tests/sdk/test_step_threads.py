"""The worker threads of plain-function ``ctx.run`` bodies (``restate_lambda.step_threads``)."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time

import pytest

from restate_lambda.step_threads import StepThreads, run_in_step_thread


async def test_returns_the_value_computed_in_another_thread() -> None:
    main = threading.get_ident()
    value, where = await run_in_step_thread(lambda: (41 + 1, threading.get_ident()))
    assert value == 42
    assert where != main


async def test_exceptions_reach_the_awaiting_task() -> None:
    def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await run_in_step_thread(boom)
    # StopIteration cannot live in an asyncio future: it arrives wrapped, not as a TypeError
    with pytest.raises(RuntimeError, match="StopIteration") as info:
        await run_in_step_thread(lambda: next(iter(())))
    assert isinstance(info.value.__cause__, StopIteration)


async def test_threads_are_reused_and_capped_and_the_backlog_runs_in_order() -> None:
    pool = StepThreads(max_threads=2)
    for _ in range(5):  # sequential jobs: one thread serves them all
        await pool.run(lambda: None)
    assert pool.threads == 1

    release = threading.Event()
    order: list[int] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def job(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1
            order.append(i)
        return i

    tasks = [asyncio.ensure_future(pool.run(functools.partial(job, i))) for i in range(6)]
    await asyncio.sleep(0.05)
    assert pool.threads == 2  # the cap: four jobs wait
    release.set()
    assert await asyncio.gather(*tasks) == list(range(6))
    assert most == 2
    assert sorted(order) == list(range(6))
    # after the burst both threads are idle: two parallel jobs start no third thread
    gate = threading.Barrier(2, timeout=5)
    assert sorted(await asyncio.gather(pool.run(gate.wait), pool.run(gate.wait))) == [0, 1]
    assert pool.threads == 2


async def test_a_cancelled_wait_leaves_the_pool_serving() -> None:
    pool = StepThreads(max_threads=1)
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    task = asyncio.ensure_future(pool.run(slow))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await pool.run(lambda: "next") == "next"


def test_an_answer_for_a_closed_loop_is_dropped() -> None:
    pool = StepThreads(max_threads=1)
    release = threading.Event()
    done = threading.Event()

    def slow() -> None:
        release.wait(5)
        done.set()

    loop = asyncio.new_event_loop()
    task = loop.create_task(pool.run(slow))
    loop.run_until_complete(asyncio.sleep(0.01))
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()
    release.set()
    assert done.wait(5)
    # the thread survived answering a closed loop and serves the next one
    assert asyncio.run(pool.run(lambda: "alive")) == "alive"
    assert pool.threads == 1


def test_the_cap_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from restate_lambda import step_threads

    monkeypatch.setenv("RESTATE_LAMBDA_STEP_THREADS", " 64 ")
    assert step_threads._cap() == 64
    monkeypatch.setenv("RESTATE_LAMBDA_STEP_THREADS", "lots")
    default = min(32, (os.cpu_count() or 1) + 4)
    assert step_threads._cap() == default
    assert "RESTATE_LAMBDA_STEP_THREADS='lots' is not a positive integer" in caplog.text
    monkeypatch.delenv("RESTATE_LAMBDA_STEP_THREADS")
    assert step_threads._cap() == default


def test_each_event_loop_gets_its_own_answers() -> None:
    pool = StepThreads(max_threads=2)
    results: dict[int, list[int]] = {}

    def on_own_loop(n: int) -> None:
        async def calls() -> list[int]:
            return [await pool.run(functools.partial(int.__mul__, i, n)) for i in range(20)]

        results[n] = asyncio.run(calls())

    threads = [threading.Thread(target=on_own_loop, args=(n,)) for n in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {2: [i * 2 for i in range(20)], 3: [i * 3 for i in range(20)]}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_threads() -> None:
    asyncio.run(run_in_step_thread(lambda: None))  # the parent's pool has a thread now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads do not exist here
        try:
            ok = asyncio.run(asyncio.wait_for(run_in_step_thread(lambda: b"ok"), 5))
            os.write(write, ok)
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 10
    out = b""
    while time.monotonic() < deadline:
        chunk = os.read(read, 16)
        if not chunk:
            break
        out += chunk
    os.close(read)
    os.waitpid(pid, 0)
    assert out == b"ok"
