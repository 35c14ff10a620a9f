"""Driver tasks: at most one per invocation in this process, started on demand.

``dispatch(X)`` makes sure X is driven soon: by a task of this engine, or (an engine that does
not run invocations itself, as on AWS) by whichever process receives the dispatcher's message.
A dispatch for an invocation already driven here marks it for another look once the current
attempt ends, so nothing that arrived meanwhile waits for the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from invoker.ports import Claimed, Dispatcher
from invoker.tasks import Background

log = logging.getLogger("restate_lambda.drivers")

#: Drives one invocation: ``(inv_id, claimed or None, reraise)``.
DriveFn = Callable[[str, Claimed | None, bool], Awaitable[None]]


class Drivers:
    """Starts and tracks driver tasks (implements :class:`~invoker.ports.Dispatch`)."""

    def __init__(
        self,
        background: Background,
        *,
        run_locally: bool = True,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._background = background
        self.run_locally = run_locally
        #: With ``run_locally`` False, runnable invocations and work due soon are handed to this
        #: dispatcher (an SQS queue on AWS) instead of local tasks and the local timer loop.
        self.dispatcher = dispatcher
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._drive: DriveFn | None = None
        #: Attempts that stream (HTTP/2) and want to hear at once of what arrives for them.
        self._wakeups: dict[str, Callable[[], None]] = {}
        #: Set whenever something falls due soon: wakes the timer loop.
        self.kick = asyncio.Event()

    def bind(self, drive: DriveFn) -> None:
        """Set the function that drives one invocation (wiring: it needs the drivers too)."""
        self._drive = drive

    def is_driven(self, inv_id: str) -> bool:
        """Whether a task of this engine drives ``inv_id`` now."""
        return inv_id in self._tasks

    def again(self, inv_id: str) -> bool:
        """Consume the "look again" mark of ``inv_id`` (set by a dispatch while it was driven)."""
        if inv_id in self._again:
            self._again.discard(inv_id)
            return True
        return False

    def dispatch(self, inv_id: str, claimed: Claimed | None = None) -> None:
        """Make sure ``inv_id`` is driven soon (duplicates are harmless)."""
        if self._background.closed:
            return
        if inv_id in self._tasks:
            self._again.add(inv_id)
            wakeup = self._wakeups.get(inv_id)
            if wakeup is not None:
                wakeup()
            return
        if claimed is None and not self.run_locally and self.dispatcher is not None:
            self._background.spawn(self.dispatcher.dispatch(inv_id))
            return
        self._start(inv_id, claimed, False)

    def watch(self, inv_id: str, wakeup: Callable[[], None]) -> None:
        """Call ``wakeup`` whenever ``inv_id`` (driven here) is dispatched again: a notification
        arrived while its attempt streams."""
        self._wakeups[inv_id] = wakeup

    def unwatch(self, inv_id: str) -> None:
        """Stop :meth:`watch`."""
        self._wakeups.pop(inv_id, None)

    def due_at(self, inv_id: str, due_ms: int) -> None:
        """Something of ``inv_id`` falls due at ``due_ms``: wake the timer loop; with a
        dispatcher (and ``run_locally`` False), also ask it for a wake-up at that time."""
        self.kick.set()
        if self.dispatcher is not None and not self.run_locally and not self._background.closed:
            self._background.spawn(self.dispatcher.schedule(inv_id, due_ms))

    def _start(self, inv_id: str, claimed: Claimed | None, reraise: bool) -> asyncio.Task[None]:
        assert self._drive is not None, "Drivers.bind was not called"
        task: asyncio.Task[None] = asyncio.ensure_future(self._drive(inv_id, claimed, reraise))
        self._tasks[inv_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(inv_id, None))
        return task

    async def drive(self, inv_id: str, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Drive ``inv_id`` in this process until it completes, suspends, backs off or turns out
        to be held by another engine (a Lambda worker's unit of work).

        ``before`` runs first, while ``inv_id`` already counts as driven here. Errors that
        stopped the driving (storage unavailable, ...) are raised, so that the caller can ask
        for a redelivery. Effects may still be in flight when this returns: see :meth:`drain`.
        """
        task = self._tasks.get(inv_id)
        if task is not None:
            self._again.add(inv_id)
            await asyncio.shield(task)
            return
        assert self._drive is not None, "Drivers.bind was not called"
        drive = self._drive

        async def run() -> None:
            if before is not None:
                await before()
            await drive(inv_id, None, True)

        task = asyncio.ensure_future(run())
        self._tasks[inv_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(inv_id, None))
        await asyncio.shield(task)

    def pending(self) -> list[asyncio.Task[Any]]:
        """Driver tasks and background tasks still running."""
        return [*self._tasks.values(), *self._background.pending()]

    async def drain(self) -> None:
        """Wait until nothing is driven and no background work is pending: what a Lambda entry
        point awaits before returning (the sandbox freezes)."""
        while True:
            tasks = self.pending()
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def close(self) -> None:
        """Cancel every driver task (their leases will be recovered later)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
