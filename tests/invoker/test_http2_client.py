"""The HTTP/2 client's failure paths: a deployment that goes away under open streams."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import pytest

from invoker.http2_client import Http2Client, Http2Error, Http2GoawayError, Http2RefusedError


async def test_a_stream_whose_response_nobody_awaited_logs_nothing_when_the_peer_goes() -> None:
    """An attempt that failed before awaiting the response (e.g. sending its body broke) leaves
    a stream whose response never gets read: the connection's end must not surface as
    asyncio's "Future exception was never retrieved" error in the log."""

    async def close_after_preface(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(close_after_preface, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    client = Http2Client()
    try:
        stream = await client.open("POST", f"http://127.0.0.1:{port}/S/h", {})
        with pytest.raises(Http2Error):
            await asyncio.wait_for(stream.receive(), 5)  # the connection's end reached it
        del stream
        gc.collect()
        await asyncio.sleep(0)
        assert [c.get("message") for c in seen] == []
    finally:
        loop.set_exception_handler(previous)
        await client.close()
        server.close()
        await server.wait_closed()


class _H2Server:
    """An h2c server that answers each request with 200 and ``ok``, except as ``plan`` says:
    ``plan(connection, request)`` (both counted from 1) may return ``"goaway"`` (GOAWAY that
    leaves this request's stream unprocessed), ``"goaway-after"`` (GOAWAY that covers it) or
    ``"refuse"`` (RST_STREAM REFUSED_STREAM). After a GOAWAY it answers nothing more on that
    connection (h2 lets it send nothing) and reads until the client closes it, as hypercorn
    does when it recycles a connection."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.connections = 0
        self.answered = 0
        self.received = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events

        self.connections += 1
        number = self.connections
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        requests = 0
        closing = False
        try:
            while data := await reader.read(1 << 16):
                if closing:  # after its GOAWAY a server reads on until the client closes
                    continue
                extra = b""
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        self.received += len(event.data)
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    if isinstance(event, h2.events.RequestReceived):
                        requests += 1
                        action = self.plan(number, requests)
                        if action == "refuse":
                            conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                        elif action == "goaway":
                            conn.close_connection(last_stream_id=max(event.stream_id - 2, 0))
                            closing = True
                        elif action == "goaway-after":
                            conn.close_connection(last_stream_id=event.stream_id)
                            closing = True
                        elif action in ("goaway-then-frame", "goaway-after-then-frame"):
                            last = event.stream_id - (2 if action == "goaway-then-frame" else 0)
                            conn.close_connection(last_stream_id=max(last, 0))
                            closing = True
                            # A frame behind the GOAWAY in the same write (hypercorn sends
                            # window updates so): h2 itself can send nothing after it.
                            extra = _WINDOW_UPDATE
                    elif isinstance(event, h2.events.StreamEnded) and not closing:
                        with contextlib.suppress(h2.exceptions.StreamClosedError):
                            conn.send_headers(event.stream_id, [(":status", "200")])
                            conn.send_data(event.stream_id, b"ok", end_stream=True)
                            self.answered += 1
                writer.write(conn.data_to_send() + extra)
        finally:
            writer.close()


#: WINDOW_UPDATE on the connection, increment 1,000.
_WINDOW_UPDATE = (
    (4).to_bytes(3, "big") + b"\x08\x00" + (0).to_bytes(4, "big") + (1000).to_bytes(4, "big")
)


async def _ask(server: _H2Server, body: bytes = b"hi") -> tuple[int, dict[str, str], bytes]:
    """One request through a new client to ``server``, as discovery sends it."""
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/S/h"
    client = Http2Client()
    try:
        return await asyncio.wait_for(client.request("POST", url, {}, body, max_body=100), 5)
    finally:
        await client.close()
        listener.close()


@pytest.mark.parametrize(
    ("plan", "connections"),
    [
        (lambda c, r: "goaway" if c == 1 else "answer", 2),
        (lambda c, r: "refuse" if r == 1 else "answer", 1),
        (lambda c, r: "goaway-then-frame" if c == 1 else "answer", 2),
    ],
    ids=["above-the-goaway", "refused-stream", "above-the-goaway-with-a-frame-behind"],
)
async def test_a_stream_the_deployment_did_not_process_is_sent_again(
    plan: Any, connections: int
) -> None:
    server = _H2Server(plan)
    status, _headers, body = await _ask(server)
    assert (status, body) == (200, b"ok")
    assert server.connections == connections
    assert server.answered == 1


@pytest.mark.parametrize("action", ["goaway-after", "goaway-after-then-frame"])
async def test_a_stream_the_goaway_covers_fails_at_once_as_not_retryable(action: str) -> None:
    """At or below the GOAWAY's last stream the request may have run: it is not sent again, and
    it fails at once (no frame can follow a GOAWAY), not at the attempt's inactivity timeout,
    also with frames behind the GOAWAY in the same read."""
    server = _H2Server(lambda c, r: action)
    with pytest.raises(Http2Error) as raised:
        await _ask(server)
    assert not isinstance(raised.value, Http2RefusedError)
    # A graceful GOAWAY (NO_ERROR): the attempt behind it may go again soon.
    assert isinstance(raised.value, Http2GoawayError)
    assert server.connections == 1


async def test_a_deployment_that_refuses_every_stream_fails_after_a_few_tries() -> None:
    server = _H2Server(lambda c, r: "refuse")
    with pytest.raises(Http2RefusedError):
        await _ask(server)
    assert server.answered == 0


@pytest.mark.parametrize("size", [0, 2, 16_384, 200_000])
async def test_a_body_goes_whole_in_the_opening_write_or_after_it(size: int) -> None:
    """The headers and the body's first frame go out together; a body over one frame or over
    the stream's window (65,535 bytes at this server) follows as flow control allows."""
    server = _H2Server(lambda c, r: "answer")
    status, _headers, body = await _ask(server, b"x" * size)
    assert (status, body) == (200, b"ok")
    assert server.received == size
