"""Background tasks an engine starts and must be able to wait for or cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class Background:
    """A set of fire-and-forget tasks: kept referenced, drained by Lambda entry points (the
    sandbox freezes when the handler returns), cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (closed: close the coroutine unrun)."""
        if self.closed:
            coro.close()
            return
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self) -> list[asyncio.Task[Any]]:
        """Tasks still running."""
        return list(self._tasks)

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
