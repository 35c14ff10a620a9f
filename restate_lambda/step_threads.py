"""The worker threads that run plain-function ``ctx.run`` bodies.

A ``ctx.run`` body that is a plain function (not ``async def``) may block, so it runs in a worker
thread, as the official SDK runs it (``asyncio.to_thread``), and the handler awaits its result.
This module is that hop, written here instead of the event loop's default executor
(``loop.run_in_executor(None, ...)``) because the hop is a measurable share of a durable step:

* a loop of hops with a trivial body, uvloop, this project's 2-core development machine:
  69-76 us of CPU per hop through ``run_in_executor`` (its ``concurrent.futures`` future, chained
  to an asyncio future through locks and callbacks), 22 us through a ``queue.SimpleQueue`` and
  one ``call_soon_threadsafe``;
* ``benchmarks/step_bench.py --body sync`` (SQLite, sole engine, uvloop, 7 repetitions): 0.55 ms
  of CPU per durable step through the default executor, 0.38 ms through this pool
  (``async def`` bodies: 0.25-0.37 ms, no hop).

The pool is one per process, shared by every event loop: each job carries the loop to answer on.
Threads start on demand, up to :data:`MAX_THREADS` (the cap of the standard library's default
executor), stay for later jobs, and are daemon threads: a body still running when the
interpreter exits is abandoned, as the process ends anyway (on Lambda, the sandbox freezes).
Jobs beyond the cap wait in order. The step's context variables are the caller's business
(:mod:`restate_lambda.invocation` copies them, as ``asyncio.to_thread`` does).

Unlike the default executor, ``loop.set_default_executor`` does not change where step bodies run;
``RESTATE_LAMBDA_STEP_THREADS`` (a positive integer, read at import) sets the cap instead, for
handlers whose steps block on slow I/O many at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _cap() -> int:
    default = min(32, (os.cpu_count() or 1) + 4)
    raw = os.environ.get("RESTATE_LAMBDA_STEP_THREADS", "").strip()
    if not raw:
        return default
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    logging.getLogger("restate_lambda").warning(
        "RESTATE_LAMBDA_STEP_THREADS=%r is not a positive integer: using %d", raw, default
    )
    return default


#: The most threads the pool starts (``RESTATE_LAMBDA_STEP_THREADS``, default
#: ``min(32, cpus + 4)``).
MAX_THREADS = _cap()

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class StepThreads:
    """A pool of worker threads answering on the event loop that submitted each job."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self._max = max_threads
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: threads started so far; how many of them wait for a job no submission claimed yet;
        #: jobs queued for the next thread to finish one (every thread busy, at the cap)
        self._threads = 0
        self._idle = 0
        self._backlog = 0

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a worker thread; its result, or the exception it raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        name = ""
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread takes this job
            elif self._threads < self._max:
                self._threads += 1
                name = f"restate-lambda-step-{self._threads}"
            else:
                self._backlog += 1  # the next thread to finish a job takes it
        self._jobs.put((loop, future, fn))
        if name:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        return await future

    @property
    def threads(self) -> int:
        """How many worker threads the pool has started."""
        return self._threads

    def _work(self) -> None:
        while True:
            loop, future, fn = self._jobs.get()
            try:
                value, exc = fn(), None
            except BaseException as e:  # handed to the awaiting task, as an executor does
                value, exc = None, _storable(e)
            # Free before answering: the answer may make its task submit the next step at once,
            # which should find this thread rather than start another.
            with self._lock:
                if self._backlog > 0:
                    self._backlog -= 1
                else:
                    self._idle += 1
            _answer(loop, future, value, exc)
            del loop, future, fn, value, exc  # an idle thread keeps no result alive

    def _after_fork(self) -> None:
        """In a forked child the threads are gone: start afresh."""
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._backlog = 0


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    value: Any,
    exc: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, value, exc)
    except RuntimeError:
        pass  # the loop closed meanwhile: nobody awaits the result any more


def _settle(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


def _storable(exc: BaseException) -> BaseException:
    """An asyncio future cannot hold ``StopIteration``: wrap it, as ``asyncio`` itself does."""
    if isinstance(exc, StopIteration):
        wrapped = RuntimeError(f"the step raised StopIteration: {exc!r}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


#: The process's pool.
POOL = StepThreads()
os.register_at_fork(after_in_child=POOL._after_fork)


async def run_in_step_thread(fn: Callable[[], T]) -> T:
    """Run ``fn()`` in one of the process's step threads (see the module docstring)."""
    return await POOL.run(fn)
