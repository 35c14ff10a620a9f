"""Failures that retrying can never fix: recognized, paused, and explained in one line.

The engine retries a failed attempt (70 times by default, then pauses). Some failures come
back identically on every retry: the official ``restate`` SDK reports a return value or a
``ctx.run`` result it cannot serialize, and a plain ``def`` handler, as ordinary retryable
errors (a bare ``TypeError``). :func:`never_succeeds` recognizes them from the stored failure
(message, stack trace, related command) and names the handler and the step;
:class:`FailureWatch` (used by ``restate-lambda dev`` and the test harness) pauses such an
invocation after its first failed attempt and logs that line. ``restate_lambda`` handlers
report the same mistakes as terminal errors themselves.

The engine should do this itself at its one commit point (see the report of issue 11);
until then this watch works from the engine's log of failed attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("restate_lambda.dev")

#: The engine's logger of failed attempts; its records carry the invocation id first.
SETTLE_LOGGER = "restate_lambda.settle"


def never_succeeds(
    target: str, message: str, stacktrace: str | None, related_command: str | None
) -> str | None:
    """One line naming ``target`` (``Service/handler``) and the step, if retrying the failure
    described by ``message``/``stacktrace``/``related_command`` can never succeed."""
    trace = stacktrace or ""
    if "output_serde.serialize(" in trace:
        return f"{target}: the return value cannot be serialized: {message}"
    if "serde.serialize(action_result)" in trace:
        step = (related_command or "?").split(" (index")[0]
        return f"{target}: the result of ctx.run({step!r}) cannot be serialized: {message}"
    if "no in-process app named" in message:
        return (
            f"{target}: its deployment is not served by this dev server ({message}): serve "
            "that module again, or remove the stale deployment (restate-lambda deployments "
            "list / remove)"
        )
    if "can't be used in 'await' expression" in message and "handler.fn(" in trace:
        return f"{target} is a plain `def`: Restate handlers must be `async def` ({message})"
    return None


def reason_of(inv: Any) -> str | None:
    """:func:`never_succeeds` of an invocation record's last failure (``None`` if none)."""
    if inv.last_failure is None:
        return None
    return never_succeeds(
        f"{inv.service}/{inv.handler}",
        inv.last_failure.message,
        inv.last_failure_stacktrace,
        inv.last_failure_related_command,
    )


class FailureWatch(logging.Handler):
    """Pauses invocations whose last failure :func:`never_succeeds` recognizes.

    Install it with :meth:`attach` while an engine runs; ``engine`` returns the current engine
    (the harness replaces its engine on restart).
    """

    def __init__(self, engine: Callable[[], Any]) -> None:
        super().__init__(logging.WARNING)
        self._engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[str | None]] = set()
        #: the one-line reasons of the invocations paused so far, by invocation id
        self.paused: dict[str, str] = {}

    def attach(self) -> None:
        """Start watching the engine's failed attempts (call from the engine's event loop)."""
        self._loop = asyncio.get_running_loop()
        logging.getLogger(SETTLE_LOGGER).addHandler(self)

    def detach(self) -> None:
        """Stop watching."""
        logging.getLogger(SETTLE_LOGGER).removeHandler(self)
        for task in self._tasks:
            task.cancel()

    def pending(self) -> list[asyncio.Task[str | None]]:
        """Checks still running."""
        return list(self._tasks)

    def emit(self, record: logging.LogRecord) -> None:
        """Check the invocation a failed-attempt record names."""
        args = record.args
        if not isinstance(args, tuple) or not args or not str(args[0]).startswith("inv_"):
            return
        if self._loop is None or self._loop.is_closed():
            return
        inv_id = str(args[0])
        self._loop.call_soon_threadsafe(self._spawn, inv_id)

    def _spawn(self, inv_id: str) -> None:
        task = asyncio.ensure_future(self.check(inv_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check(self, inv_id: str) -> str | None:
        """Pause ``inv_id`` if its last failure can never succeed; returns the reason."""
        engine = self._engine()
        try:
            # the engine logs the failure just before committing it: wait for the commit
            for attempt in range(100):
                found = await engine.store.invocation(inv_id)
                if found is None or found.inv.status.value != "running":
                    break
                await asyncio.sleep(0 if attempt < 5 else 0.01)
            if found is None or found.inv.status.value != "backing-off":
                return None
            reason = reason_of(found.inv)
            if reason is None:
                return None
            await engine.manage_invocation(inv_id, "pause")
        except Exception as exc:  # the watch must never take the server down
            log.debug("failure watch: %s: %r", inv_id, exc)
            return None
        self.paused[inv_id] = reason
        log.error(
            "%s. Retrying cannot fix this: paused invocation %s; fix the handler, then "
            "`restate-lambda invocations resume %s`",
            reason,
            inv_id,
            inv_id,
        )
        return reason
