"""The dev server's grace period for requests in flight at shutdown (infra/shutdown_grace.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from infra.shutdown_grace import AnswerOnShutdown

SCOPE = {"type": "http", "method": "POST", "path": "/Greeter/greet", "headers": []}


class _Client:
    """Sends one request through the wrapper and keeps what the server sent back."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def statuses(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]


def _app(wait: asyncio.Event, *, start_first: bool = False, seen: list[Any] | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(asyncio.current_task())
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await wait.wait()
        if not start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _in_flight_then_stop(
    wrapper: AnswerOnShutdown, stop: asyncio.Event, client: _Client
) -> asyncio.Future[None]:
    """A request through ``wrapper`` that is in flight when the server is told to stop."""
    task = asyncio.ensure_future(wrapper(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.01)
    stop.set()
    return task


async def test_a_request_runs_in_the_servers_own_task() -> None:
    done, stop = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []
    done.set()
    wrapper = AnswerOnShutdown(_app(done, seen=seen), stop, grace=5.0)
    client = _Client()
    task = asyncio.ensure_future(wrapper(SCOPE, client.receive, client.send))
    await task
    assert seen == [task]
    assert client.statuses == [200]


async def test_a_request_still_waiting_after_the_grace_gets_a_503_json_error() -> None:
    never, stop = asyncio.Event(), asyncio.Event()
    wrapper = AnswerOnShutdown(_app(never), stop, grace=0.05)
    client = _Client()
    task = await _in_flight_then_stop(wrapper, stop, client)
    await asyncio.wait_for(task, 5)
    assert not task.cancelled()
    assert client.statuses == [503]
    body = json.loads(client.sent[-1]["body"])
    assert body["code"] == 503 and "shutting down" in body["message"]


async def test_a_request_that_ends_within_the_grace_gets_its_answer() -> None:
    release, stop = asyncio.Event(), asyncio.Event()
    wrapper = AnswerOnShutdown(_app(release), stop, grace=5.0)
    client = _Client()
    task = await _in_flight_then_stop(wrapper, stop, client)
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.wait_for(task, 5)
    assert client.statuses == [200]


async def test_a_response_already_started_is_cut_without_a_second_start() -> None:
    never, stop = asyncio.Event(), asyncio.Event()
    wrapper = AnswerOnShutdown(_app(never, start_first=True), stop, grace=0.05)
    client = _Client()
    task = await _in_flight_then_stop(wrapper, stop, client)
    await asyncio.wait_for(task, 5)
    assert client.statuses == [200]


async def test_a_request_arriving_during_the_grace_gets_what_is_left_of_it() -> None:
    never, stop = asyncio.Event(), asyncio.Event()
    waiting = _app(never)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/fast":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await waiting(scope, receive, send)

    wrapper = AnswerOnShutdown(app, stop, grace=0.2)
    first, fast, slow = _Client(), _Client(), _Client()
    in_flight = await _in_flight_then_stop(wrapper, stop, first)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(wrapper({**SCOPE, "path": "/fast"}, fast.receive, fast.send), 5)
    late = asyncio.ensure_future(wrapper(SCOPE, slow.receive, slow.send))
    await asyncio.wait_for(asyncio.gather(in_flight, late), 5)
    assert fast.statuses == [200]
    assert first.statuses == [503]
    assert slow.statuses == [503]


async def test_a_cancellation_not_from_the_shutdown_propagates() -> None:
    never, stop = asyncio.Event(), asyncio.Event()
    wrapper = AnswerOnShutdown(_app(never), stop, grace=5.0)
    client = _Client()
    task = asyncio.ensure_future(wrapper(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert client.statuses == []
