"""The HTTP/2 client's failure paths: a deployment that goes away under open streams."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from invoker.http2_client import Http2Client, Http2Error


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
