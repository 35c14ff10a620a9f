"""A bidirectional attempt whose HTTP/2 stream breaks: the attempt fails with 503 (never as a
protocol violation, never with a traceback) and is retried: at once when the deployment
closed its connection gracefully (a server recycling its connections), after the retry
policy's delay otherwise. The deployment is a real h2c server speaking the invocation protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest

from infra.testing import TestEnvironment
from restate_lambda.protocol.framing import encode
from restate_lambda.protocol.messages import pb

CT = "application/vnd.restate.invocation.v6"
MANIFEST_CT = "application/vnd.restate.endpointmanifest.v2+json"
MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 6,
    "services": [
        {
            "name": "S",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "h",
                    "input": {"contentType": "application/json"},
                    "output": {"contentType": "application/json"},
                }
            ],
        }
    ],
}

#: What the deployment does with the n-th invocation request (counted from 1): "answer"
#: (Output and End), "goaway" (answers the headers, then GOAWAY NO_ERROR covering the stream),
#: "goaway-error" (the same with INTERNAL_ERROR), "reset" (RST_STREAM INTERNAL_ERROR after the
#: headers).
Plan = Callable[[int], str]


class _Deployment:
    """An h2c deployment: ``/discover`` answers the manifest, invocations follow ``plan``."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.invocations = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, str] = {}
        closing = False
        try:
            while data := await reader.read(1 << 16):
                if closing:  # after its GOAWAY a server reads on until the client closes
                    continue
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers)[":path"]
                        paths[event.stream_id] = path
                        if path.endswith("/discover"):
                            continue  # answered at the end of its request
                        self.invocations += 1
                        closing = self._invoke(conn, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded) and paths.get(
                        event.stream_id, ""
                    ).endswith("/discover"):
                        conn.send_headers(
                            event.stream_id,
                            [(":status", "200"), ("content-type", MANIFEST_CT)],
                        )
                        conn.send_data(event.stream_id, json.dumps(MANIFEST).encode(), True)
                writer.write(conn.data_to_send())
        except (h2.exceptions.H2Error, ConnectionError):
            pass
        finally:
            writer.close()

    def _invoke(self, conn: h2.connection.H2Connection, stream_id: int) -> bool:
        """Answer one invocation's stream as planned; True when the connection is closing."""
        action = self.plan(self.invocations)
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", CT)])
        if action == "answer":
            output = pb().OutputCommandMessage()
            output.value.content = b'"fine"'
            conn.send_data(stream_id, encode(output) + encode(pb().EndMessage()), True)
            return False
        if action == "reset":
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return False
        code = (
            h2.errors.ErrorCodes.NO_ERROR
            if action == "goaway"
            else h2.errors.ErrorCodes.INTERNAL_ERROR
        )
        conn.close_connection(error_code=code, last_stream_id=stream_id)
        return True


@contextlib.asynccontextmanager
async def _runtime(plan: Plan) -> AsyncIterator[tuple[TestEnvironment, _Deployment]]:
    deployment = _Deployment(plan)
    server = await asyncio.start_server(deployment.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with TestEnvironment() as env:
            r = await env.admin.post("/deployments", json={"uri": url})
            assert r.status_code == 201, r.text
            yield env, deployment
    finally:
        server.close()


async def test_a_graceful_goaway_under_the_stream_retries_at_once() -> None:
    """hypercorn closes an HTTP/2 connection after 1,000 requests and drops the streams in
    flight: their attempts go again on a new connection without the retry delay (the clock
    never moves here; a delayed retry would leave the invocation backing off)."""
    async with _runtime(lambda n: "goaway" if n == 1 else "answer") as (env, deployment):
        inv = await env.send("S", "h", "x")
        await env.settle()
        assert await env.status(inv) == "completed"
        assert await env.result(inv) == "fine"
        assert deployment.invocations == 2
        assert deployment.connections >= 2  # discovery's connection is reused, then a new one


@pytest.mark.parametrize("action", ["goaway-error", "reset"])
async def test_a_broken_stream_fails_the_attempt_with_503_and_backs_off(action: str) -> None:
    async with _runtime(lambda n: action if n == 1 else "answer") as (env, deployment):
        inv = await env.send("S", "h", "x")
        await env.settle()
        assert await env.status(inv) == "backing-off"
        described = await env.describe(inv)
        failure = json.dumps(described)
        assert "the stream broke" in failure or "no response from the deployment" in failure
        assert "571" not in failure and "protocol violation" not in failure
        assert deployment.invocations == 1
        await env.advance(timedelta(seconds=5))
        assert await env.result(inv) == "fine"
        assert deployment.invocations == 2
