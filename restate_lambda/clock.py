"""Injected time: one Clock protocol, the system clock, and a manual clock for tests."""

from __future__ import annotations

import asyncio
import time as _time
from datetime import timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock time in epoch milliseconds."""

    def now_ms(self) -> int:
        """Current time as milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock: the only place that reads wall time."""

    def now_ms(self) -> int:
        """Current time as milliseconds since the Unix epoch."""
        return _time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when a test advances it.

    ``advanced`` is an :class:`asyncio.Event`-like hook: components that wait for time to pass
    (the timer loop) register callbacks through :meth:`on_advance` so that advancing the clock
    wakes them without any real sleep.
    """

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms
        self._listeners: list[asyncio.Event] = []

    def now_ms(self) -> int:
        """Current manual time."""
        return self._now

    def advance(self, delta: timedelta | int) -> None:
        """Move time forward by ``delta`` (a timedelta or milliseconds) and wake listeners."""
        ms = delta if isinstance(delta, int) else int(delta.total_seconds() * 1000)
        if ms < 0:
            raise ValueError("time only moves forward")
        self._now += ms
        for event in self._listeners:
            event.set()

    def on_advance(self, event: asyncio.Event) -> None:
        """Set ``event`` whenever the clock advances."""
        self._listeners.append(event)


#: The clock handlers read (sleeps, delayed sends, ``ctx.time()``); see :func:`handler_clock`.
_handler_clock: Clock = SystemClock()


def handler_clock() -> Clock:
    """The clock the SDK's handlers read: the system clock unless a test installed another.

    Sleep wake-up times, delayed sends and ``ctx.time()`` are computed from it, so a test
    harness that installs its manual clock (:func:`set_handler_clock`) wakes a one-day
    ``ctx.sleep`` by advancing that clock one day.
    """
    return _handler_clock


def set_handler_clock(clock: Clock | None) -> Clock:
    """Make handlers of this process read ``clock`` (``None``: the system clock again).

    Process-wide, like the wall clock it replaces; returns the clock it replaced so a caller
    can restore it. Meant for tests (:mod:`restate_lambda.testing` does it for you).
    """
    global _handler_clock
    previous = _handler_clock
    _handler_clock = clock if clock is not None else SystemClock()
    return previous
