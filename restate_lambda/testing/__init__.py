"""Test your handlers in process, in milliseconds: ``restate_lambda.testing``.

A :class:`Harness` runs the whole runtime (engine, store, ingress and admin API) inside the
test's event loop, serving your ASGI app (``restate_lambda.app(...)`` or the official
``restate.app(...)``) in process, on the memory or the SQLite backend, with a manual clock that
drives every timer: ``await h.advance(timedelta(days=1))`` wakes a one-day ``ctx.sleep`` at
once, for handlers of both SDKs.

With pytest (the plugin is registered by installing ``restate-lambda``; async tests need
``pytest-asyncio``, installed by the ``testing`` extra)::

    from datetime import timedelta

    import pytest
    from restate_lambda.testing import Harness

    from myapp import app

    @pytest.fixture
    def restate_app():
        return app

    async def test_reminder(restate_harness: Harness) -> None:
        inv = await restate_harness.send("Reminder", "run", "call mum", key="r1")
        await restate_harness.advance(timedelta(days=1))
        assert "sent: call mum" == await restate_harness.result(inv)

:func:`crash_everywhere` replays a scenario with the attempt cut off after every journal entry
and reports runs that end differently: non-determinism (``random()`` or ``time.time()``
outside ``ctx.run``) and missing idempotency, found in your test suite.

Importing this package is cheap; the runtime is loaded when one of its names is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restate_lambda.testing.crash import CrashReport, Divergence, crash_everywhere
    from restate_lambda.testing.in_process import (
        NO_INPUT,
        Harness,
        InvocationFailed,
        JournalEntry,
        NotCompletedError,
        harness,
    )
    from restate_lambda.testing.sdk_time import default_start_ms, handlers_follow

_EXPORTS = {
    "Harness": "in_process",
    "harness": "in_process",
    "InvocationFailed": "in_process",
    "NotCompletedError": "in_process",
    "JournalEntry": "in_process",
    "NO_INPUT": "in_process",
    "crash_everywhere": "crash",
    "CrashReport": "crash",
    "Divergence": "crash",
    "default_start_ms": "sdk_time",
    "handlers_follow": "sdk_time",
}

__all__ = [
    "NO_INPUT",
    "CrashReport",
    "Divergence",
    "Harness",
    "InvocationFailed",
    "JournalEntry",
    "NotCompletedError",
    "crash_everywhere",
    "default_start_ms",
    "handlers_follow",
    "harness",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'restate_lambda.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"restate_lambda.testing.{module}"), name)
    globals()[name] = value
    return value
