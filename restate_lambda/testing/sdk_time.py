"""Make handlers running in this process read a test's manual clock, for both SDKs.

Handlers compute a sleep's wake-up time (and a delayed send's start time) from *their* notion
of now, not from the engine's clock. Advancing the engine's manual clock by one day wakes a
one-day sleep only if the handler computed its wake-up time from that same clock:

* ``restate_lambda`` (this SDK) reads :func:`restate_lambda.clock.handler_clock`; we install
  the manual clock there.
* the official ``restate`` SDK hands a *relative* duration to its Rust state machine, which
  adds ``SystemTime::now()``. We wrap ``restate.vm.VMWrapper.sys_sleep`` and ``sys_send`` to
  add the offset between the manual clock and wall time, so the wake-up time written to the
  journal is ``manual now + duration``; and ``ctx.time()`` (``time.time()`` in
  ``restate.server_context``) answers manual time.

Exactness for the official SDK: the Rust side reads the wall clock a few microseconds after we
do. Its wake-up time is in whole milliseconds, so it is exact unless a millisecond boundary
passes in between; we wait out the last 0.2 ms of a millisecond before reading, which leaves
only a process descheduled for longer than that between two adjacent calls 1 ms late.

The manual clock must not be behind wall time (the Rust side cannot take a negative
duration): :func:`default_start_ms` starts it ahead.
"""

from __future__ import annotations

import contextlib
import logging
import time as _time
from collections.abc import Iterator
from typing import Any

from restate_lambda.clock import Clock, SystemClock, set_handler_clock

log = logging.getLogger("restate_lambda.testing")

_HOUR_MS = 3_600_000


def default_start_ms() -> int:
    """Where a test's manual clock starts: a whole hour, one to two hours after wall time.

    Ahead of wall time, so the official SDK's wall-clock arithmetic never needs a negative
    duration; a whole hour, so timestamps in failures are easy to read.
    """
    return (_time.time_ns() // 1_000_000 // _HOUR_MS + 2) * _HOUR_MS


def _wall_ms_settled() -> int:
    """Wall time in ms, read at least 0.2 ms before the next millisecond starts."""
    while True:
        ns = _time.time_ns()
        if ns % 1_000_000 < 800_000:
            return ns // 1_000_000


def _relative(clock: Clock, millis: int) -> int:
    """The duration to give the Rust VM so that its ``now + duration`` is ``clock + millis``."""
    shifted = clock.now_ms() + millis - _wall_ms_settled()
    if shifted < 0:
        log.warning(
            "the manual clock is %d ms behind wall time: a restate-sdk timer of %d ms fires late",
            -shifted + millis,
            millis,
        )
        return 0
    return shifted


#: The clocks of the open :func:`handlers_follow` blocks, oldest first; the newest one rules.
_followed: list[Clock] = []
#: The official SDK's originals, saved while the patch is installed.
_originals: dict[str, Any] = {}


def _current() -> Clock | None:
    return _followed[-1] if _followed else None


def _install_official_sdk_patch() -> None:
    """Wrap the official SDK's sleep, send and ``time`` to read the newest followed clock
    (installed once, however many blocks are open; removed when the last one closes)."""
    if _originals:
        return
    try:
        import restate.server_context as server_context
        import restate.vm as vm
    except ImportError:  # the official SDK is not installed: nothing to follow
        return
    wrapper = vm.VMWrapper
    original_sleep = wrapper.sys_sleep
    original_send = wrapper.sys_send

    def sys_sleep(self: Any, millis: int, name: str | None = None) -> Any:
        clock = _current()
        if clock is not None:
            millis = _relative(clock, int(millis))
        return original_sleep(self, millis, name)

    def sys_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        # signature: (service, handler, parameter, key=None, delay=None, ...)
        clock = _current()
        if clock is not None and len(args) > 4 and args[4]:
            args = (*args[:4], _relative(clock, int(args[4])), *args[5:])
        elif clock is not None and kwargs.get("delay"):
            kwargs["delay"] = _relative(clock, int(kwargs["delay"]))
        return original_send(self, *args, **kwargs)

    _originals.update(sleep=original_sleep, send=original_send, time=vars(server_context)["time"])
    wrapper.sys_sleep = sys_sleep  # type: ignore[method-assign]
    wrapper.sys_send = sys_send  # type: ignore[method-assign]
    setattr(server_context, "time", _FollowedTimeModule())  # noqa: B010


def _remove_official_sdk_patch() -> None:
    if not _originals:
        return
    import restate.server_context as server_context
    import restate.vm as vm

    vm.VMWrapper.sys_sleep = _originals["sleep"]  # type: ignore[method-assign]
    vm.VMWrapper.sys_send = _originals["send"]  # type: ignore[method-assign]
    setattr(server_context, "time", _originals["time"])  # noqa: B010
    _originals.clear()


class _FollowedTimeModule:
    """Stands in for the ``time`` module inside ``restate.server_context``: the newest
    followed clock's time, wall time when none is open."""

    def time(self) -> float:
        """Followed time in seconds."""
        clock = _current()
        return (clock or SystemClock()).now_ms() / 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


@contextlib.contextmanager
def handlers_follow(clock: Clock) -> Iterator[None]:
    """While open, handlers of both SDKs in this process take their time from ``clock``.

    Process-wide. Blocks may overlap in any order (two test environments open at once, closed
    in either order): the newest open block's clock rules, and when the last one closes,
    handlers read wall time again and the official SDK is left as it was.
    """
    _followed.append(clock)
    try:
        set_handler_clock(clock)
        _install_official_sdk_patch()
        yield
    finally:
        for i in range(len(_followed) - 1, -1, -1):
            if _followed[i] is clock:
                del _followed[i]
                break
        set_handler_clock(_current())
        if not _followed:
            _remove_official_sdk_patch()
