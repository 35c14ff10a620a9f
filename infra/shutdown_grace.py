"""The dev server's grace period for requests in flight when it stops.

Once the server is told to stop, a request still waiting (typically a blocking call whose
invocation keeps retrying) gets ``grace`` seconds; then it is cut, and answered with a clean
503 JSON error (if its response had not started) instead of a cancelled connection and a
traceback in the log.

Requests run in their own server task, as without the wrapper: while the server runs, the
wrapper only notes the task and whether its response started. An earlier version ran every
request in a second task next to a task waiting for the stop, which cost a task, an
``asyncio.wait`` and their wake-ups per request (about 4 % of the dev server's CPU per call
under load, py-spy, counter workload). Now one watcher task per server waits for the stop and,
``grace`` seconds later, cancels the requests still in flight. A request that arrives after the
stop began takes the slower way, with a deadline of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

#: The answer of a request cut at shutdown before its response started.
SHUTDOWN_BODY = (
    b'{"code":503,"message":"restate-lambda dev is shutting down; the invocation '
    b"is durable and goes on when the server starts again (restate-lambda "
    b'invocations list)"}'
)


class _InFlight:
    """One request's progress: whether its response started, whether shutdown cut it."""

    __slots__ = ("cut", "started")

    def __init__(self) -> None:
        self.started = False
        self.cut = False


class AnswerOnShutdown:
    """ASGI wrapper giving requests in flight ``grace`` seconds after ``stopping`` is set, then
    a 503 JSON answer (see the module docstring)."""

    def __init__(self, app: Any, stopping: asyncio.Event, grace: float) -> None:
        self.app = app
        self.stopping = stopping
        self.grace = grace
        self._in_flight: dict[asyncio.Task[Any], _InFlight] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._cut_at: float | None = None  # loop time at which requests in flight are cut

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
        state = _InFlight()

        async def tracking_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        if self.stopping.is_set():
            await self._late(scope, receive, send, tracking_send, state)
            return
        self._in_flight[task] = state
        try:
            await self.app(scope, receive, tracking_send)
        except BaseException:
            if not state.cut:
                raise
        finally:
            self._in_flight.pop(task, None)
        if state.cut:
            if task.cancelling():
                task.uncancel()
            if not state.started:
                await _answer_503(send)

    async def _late(
        self, scope: Any, receive: Any, send: Any, tracking_send: Any, state: _InFlight
    ) -> None:
        """A request that arrived after the stop began: ``grace`` seconds of its own, counted
        from the stop (at once if the requests in flight were already cut)."""
        loop = asyncio.get_running_loop()
        left = self.grace if self._cut_at is None else max(self._cut_at - loop.time(), 0.0)
        inner = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        done, _ = await asyncio.wait([inner], timeout=left)
        if inner in done:
            inner.result()
            return
        inner.cancel()
        with contextlib.suppress(BaseException):
            await inner
        if not state.started:
            await _answer_503(send)

    async def _watch(self) -> None:
        await self.stopping.wait()
        loop = asyncio.get_running_loop()
        self._cut_at = loop.time() + self.grace
        await asyncio.sleep(self.grace)
        for task, state in list(self._in_flight.items()):
            state.cut = True
            task.cancel()


async def _answer_503(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(SHUTDOWN_BODY)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": SHUTDOWN_BODY})
