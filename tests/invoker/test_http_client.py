"""The HTTP/1.1 client of request-response deployments, against a raw socket server that answers
with exactly the bytes each test gives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from invoker.http_client import HttpClient, HttpClientError


class _Server:
    """Answers the n-th request with ``answers[n]`` (the last one from then on);
    ``close_after`` closes each connection after answering that many requests on it."""

    def __init__(self, answers: list[bytes], close_after: int | None = None) -> None:
        self.answers = answers
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                self.requests.append(await _read_request(reader))
                writer.write(self.answers[min(len(self.requests), len(self.answers)) - 1])
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and sized body) as the client sent it."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def _serving(server: _Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


async def _ask(answers: list[bytes], **kwargs: object) -> tuple[list[object], _Server]:
    server = _Server(answers)
    client = HttpClient()
    out: list[object] = []
    async with _serving(server) as url:
        for _ in range(len(answers)):
            out.append(await client.request("POST", f"{url}/x?y=1", {"a": "b"}, b"hi", **kwargs))  # type: ignore[arg-type]
    await client.close()
    return out, server


async def test_status_headers_and_a_sized_body() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Odd:  spaced \r\n"
    answer += b"Content-Length: 5\r\n\r\nhello"
    (response,), server = await _ask([answer])
    assert response.status == 200  # type: ignore[attr-defined]
    assert response.headers == {  # type: ignore[attr-defined]
        "content-type": "application/json",
        "x-odd": "spaced",
        "content-length": "5",
    }
    assert response.body == b"hello"  # type: ignore[attr-defined]
    assert server.requests[0].startswith(b"POST /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert server.requests[0].endswith(b"a: b\r\ncontent-length: 2\r\n\r\nhi")


async def test_a_chunked_body_with_trailers_and_a_response_without_headers() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    bare = b"HTTP/1.1 204 No Content\r\n\r\n"
    (first, second), server = await _ask([chunked, bare])
    assert (first.status, first.body) == (200, b"abcde")  # type: ignore[attr-defined]
    assert (second.status, second.headers, second.body) == (204, {}, b"")  # type: ignore[attr-defined]
    assert server.connections == 1  # kept alive between the two


async def test_a_body_ended_by_closing_the_connection_is_read_and_the_connection_dropped() -> None:
    server = _Server([b"HTTP/1.1 200 OK\r\n\r\nuntil the end"], close_after=1)
    client = HttpClient()
    async with _serving(server) as url:
        first = await client.request("GET", f"{url}/", {})
        second = await client.request("GET", f"{url}/", {})
    assert first.body == second.body == b"until the end"
    assert server.connections == 2
    await client.close()


async def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = _Server([answer], close_after=1)  # closes after answering, without saying so
    client = HttpClient()
    async with _serving(server) as url:
        for _ in range(3):
            assert (await client.request("GET", f"{url}/", {})).body == b"ok"
            await asyncio.sleep(0.01)  # let the close reach us (or not: the retry covers it)
    assert server.connections == 3
    await client.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", "over the limit of 5"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n", "over 1 MiB"),
        (b"SPDY/3 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 OK\r\n\r\n", "ValueError"),
    ],
)
async def test_a_bad_response_is_a_client_error(answer: bytes, message: str) -> None:
    with pytest.raises(HttpClientError, match=message):
        await _ask([answer], max_body=5)


async def test_a_connection_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = HttpClient()
    try:
        with pytest.raises(HttpClientError, match=r"no response within 0\.2 s"):
            await client.request("GET", f"http://127.0.0.1:{port}/", {}, timeout=0.2)
    finally:
        listener.close()
        await client.close()


class _Trickle(_Server):
    """Writes each answer ``step`` bytes at a time, draining in between (every split point of
    the head, the chunk lines and the bodies reaches the client as its own segment)."""

    def __init__(self, answers: list[bytes], step: int) -> None:
        super().__init__(answers)
        self.step = step

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                self.requests.append(await _read_request(reader))
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                for at in range(0, len(answer), self.step):
                    writer.write(answer[at : at + self.step])
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        writer.close()


@pytest.mark.parametrize("step", [1, 2, 7])
async def test_a_response_arriving_in_small_pieces_is_parsed_whole(step: int) -> None:
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
    chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    chunked += b"5\r\nhello\r\n1;x=y\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n"
    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server = _Trickle([sized, chunked, empty], step)
    client = HttpClient()
    async with _serving(server) as url:
        got = [await client.request("POST", f"{url}/", {}, b"x") for _ in range(3)]
    await client.close()
    assert [(r.status, r.body) for r in got] == [
        (200, b"hello world"),
        (201, b"hello world"),
        (200, b""),
    ]
    assert got[1].headers["x-a"] == "1"
    assert server.connections == 1


async def test_a_connection_closed_mid_body_is_an_error_and_not_reused() -> None:
    server = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"], close_after=1)
    client = HttpClient()
    async with _serving(server) as url:
        with pytest.raises(HttpClientError, match="IncompleteReadError"):
            await client.request("GET", f"{url}/", {})
    assert client._idle.get(("http", "127.0.0.1", int(url.rsplit(":", 1)[1]))) in (None, [])
    await client.close()


async def test_a_chunk_without_its_crlf_is_a_client_error() -> None:
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY\r\n0\r\n\r\n"
    with pytest.raises(HttpClientError, match="no CRLF after a chunk"):
        await _ask([bad])


async def test_bytes_after_a_complete_response_drop_the_connection() -> None:
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE"
    server = _Server([extra, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    client = HttpClient()
    async with _serving(server) as url:
        first = await client.request("GET", f"{url}/", {})
        await asyncio.sleep(0.01)
        second = await client.request("GET", f"{url}/", {})
    await client.close()
    assert first.body == second.body == b"ok"
    assert server.connections == 2
