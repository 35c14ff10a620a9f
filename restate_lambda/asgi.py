"""The ASGI app: request-response over HTTP/1.1 (or in process, whole body in one message) and
bidirectional streaming over HTTP/2; also exposes the Lambda handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from restate_lambda.exchange import (
    Reply,
    check_invocation,
    invocation_headers,
    parse_path,
    request_response,
    verify_identity,
)

if TYPE_CHECKING:
    from restate_lambda.endpoint_config import EndpointConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


async def _send_reply(send: Send, reply: Reply) -> None:
    status, headers, body = reply
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class AsgiApp:
    """ASGI 3 application serving the endpoint's services."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.endpoint = endpoint
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise NotImplementedError(f"unsupported ASGI scope {scope['type']}")
        http2 = str(scope.get("http_version", "1.1")).startswith("2")
        kind, service, handler = parse_path(scope["path"])
        if kind == "invoke" and http2 and self.endpoint.protocol != "request_response":
            await self._bidi(scope, receive, send, service, handler)
            return
        body = await _read_body(receive)
        if body is None:
            return
        reply = await request_response(
            self.endpoint,
            scope.get("method", "POST"),
            scope["path"],
            _headers(scope),
            body,
            bidi_capable=http2,
            extensions=scope.get("extensions"),
        )
        await _send_reply(send, reply)

    async def _bidi(
        self, scope: Scope, receive: Receive, send: Send, service: str | None, handler: str | None
    ) -> None:
        from restate_lambda.invocation import Attempt
        from restate_lambda.vm.machine import Machine

        headers = _headers(scope)
        denied = verify_identity(self.endpoint, headers, scope["path"])
        if denied is not None:
            await _read_body(receive)
            await _send_reply(send, denied)
            return
        error, version, h = check_invocation(self.endpoint, headers, service, handler)
        if error is not None:
            await _read_body(receive)
            await _send_reply(send, error)
            return
        assert h is not None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in invocation_headers(version)],
            }
        )

        async def sink(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        m = Machine(version, eager_runs=self.endpoint.eager_runs)
        input_open = True
        while input_open and not m.closed:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            m.feed(message.get("body", b""))
            if not message.get("more_body", False):
                m.close_input()
                input_open = False
            elif m.is_ready():
                break
        attempt: Attempt | None = None
        reader: asyncio.Task[None] | None = None
        if not m.closed:
            attempt = Attempt(m, h, headers, sink=sink)
            if input_open:
                reader = asyncio.ensure_future(_pump(receive, attempt))
            await attempt.run()
        out = m.take_output()
        if out:
            await sink(out)
        if reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(reader), 5.0)
            except TimeoutError:
                reader.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def lambda_handler(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """AWS Lambda entry point (Restate's Lambda envelope, discovery included).

        ``context`` is the Lambda context: its ``get_remaining_time_in_millis`` drives the
        voluntary suspension before the deadline (see :mod:`restate_lambda.deadline`).
        """
        from restate_lambda.aws_lambda import handle_event

        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return self._loop.run_until_complete(handle_event(self.endpoint, event, remaining))


async def _pump(receive: Receive, attempt: Any) -> None:
    """Forward request-stream chunks to the attempt until the runtime closes its side."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            attempt.feed(None)
            return
        body = message.get("body", b"")
        if body:
            attempt.feed(body)
        if not message.get("more_body", False):
            attempt.feed(None)
            return
