"""Build framed request bodies and read framed responses, for driving handlers in process."""

from __future__ import annotations

import asyncio
from typing import Any

from restate_lambda.protocol import encode, encode_raw
from restate_lambda.protocol.framing import decode_all
from restate_lambda.protocol.ids import InvocationId
from restate_lambda.protocol.messages import MessageType, parse, pb

T = MessageType
INVOCATION_ID = InvocationId(1234, 5678)


def start(
    known_entries: int,
    key: str = "",
    state: dict[str, bytes] | None = None,
    partial: bool = False,
    seed: int = 42,
    retry_count: int = 0,
    duration_ms: int = 0,
) -> bytes:
    """A framed StartMessage."""
    msg = pb().StartMessage(
        id=INVOCATION_ID.to_bytes(),
        debug_id=str(INVOCATION_ID),
        known_entries=known_entries,
        key=key,
        partial_state=partial,
        random_seed=seed,
        retry_count_since_last_stored_entry=retry_count,
        duration_since_last_stored_entry=duration_ms,
    )
    for k, v in (state or {}).items():
        msg.state_map.add(key=k.encode(), value=v)
    return encode(msg)


def input_cmd(body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A framed InputCommand."""
    msg = pb().InputCommandMessage()
    msg.value.content = body
    for k, v in (headers or {}).items():
        msg.headers.add(key=k, value=v)
    return encode(msg)


def msg(cls_name: str, /, **fields: Any) -> bytes:
    """Frame a message given its protobuf class name and fields."""
    return encode(getattr(pb(), cls_name)(**fields))


def notification(t: int, **fields: Any) -> bytes:
    """Frame a notification of type ``t`` built from a template."""
    tmpl = pb().NotificationTemplate(**fields)
    return encode_raw(t, tmpl.SerializeToString())


def run_completion(cid: int, value: bytes) -> bytes:
    """A RunCompletionNotification carrying ``value``."""
    return notification(
        T.RUN_COMPLETION_NOTIFICATION, completion_id=cid, value=pb().Value(content=value)
    )


def request(*frames: bytes) -> bytes:
    """The body of a request-response invocation."""
    return b"".join(frames)


def invoke(
    app: Any,
    service: str,
    handler: str,
    body: bytes,
    version: int = 6,
    content_type: str | None = None,
) -> tuple[int, list[tuple[int, Any]]]:
    """Call the ASGI app in process; returns (status, [(type, parsed message)])."""
    status, raw = asyncio.run(
        asgi_call(
            app,
            "POST",
            f"/invoke/{service}/{handler}",
            body,
            content_type or f"application/vnd.restate.invocation.v{version}",
        )
    )
    if status != 200:
        return status, []
    return status, [(f.type, parse(f.type, f.payload)) for f in decode_all(raw)]


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    http_version: str = "1.1",
    accept: str | None = None,
) -> tuple[int, bytes]:
    """Drive an ASGI app with the whole body in one message."""
    headers = []
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    if accept:
        headers.append((b"accept", accept.encode()))
    scope = {
        "type": "http",
        "http_version": http_version,
        "method": method,
        "path": path,
        "headers": headers,
        "query_string": b"",
        "root_path": "",
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def types(messages: list[tuple[int, Any]]) -> list[str]:
    """Names of the message types of a response."""
    return [MessageType(t).name for t, _ in messages]
