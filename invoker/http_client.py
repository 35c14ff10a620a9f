"""A small HTTP/1.1 client for request-response exchanges with handler deployments.

Why not httpx: per request it costs several times the CPU of the whole exchange here (it probes
for async libraries on every call), and it writes headers and body in separate segments, which
Nagle's algorithm plus delayed ACKs turn into tens of milliseconds. This client keeps
connections alive per origin, sets ``TCP_NODELAY``, writes each request in one segment and
reads ``content-length`` or chunked bodies.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HttpClientError(Exception):
    """The exchange failed: connection refused or reset, timeout, or a malformed response."""


@dataclass(slots=True)
class HttpResponse:
    """Status, lower-cased headers and body of a response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Conn:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        self.writer.close()


class _StaleConnectionError(Exception):
    """A kept-alive connection was closed by the server before it answered."""


class HttpClient:
    """Keep-alive HTTP/1.1 client (plain HTTP; HTTPS through ``ssl`` when the URL asks)."""

    def __init__(self, max_idle_per_origin: int = 64) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._max_idle = max_idle_per_origin

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes = b"",
        timeout: float = 60.0,
        max_body: int | None = None,
    ) -> HttpResponse:
        """Send one request and return the complete response.

        ``max_body``: a response body longer than this fails the request (nothing more of it is
        read; the connection is closed).
        """
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        head = [f"{method} {target} HTTP/1.1", f"host: {host_header}"]
        for k, v in headers.items():
            head.append(f"{k}: {v}")
        if method not in ("GET", "HEAD") or body:
            head.append(f"content-length: {len(body)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        origin = (scheme, host, port)
        try:
            async with asyncio.timeout(timeout):
                for _ in range(3):
                    conn = await self._acquire(origin)
                    try:
                        response, keep = await self._exchange(conn, payload, method, max_body)
                    except _StaleConnectionError:
                        conn.close()
                        continue
                    except BaseException:
                        conn.close()
                        raise
                    if keep:
                        self._release(origin, conn)
                    else:
                        conn.close()
                    return response
                raise HttpClientError(f"{url}: the server keeps closing connections")
        except TimeoutError as exc:
            raise HttpClientError(f"{url}: no response within {timeout:g} s") from exc
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise HttpClientError(f"{url}: {type(exc).__name__}: {exc}") from exc

    async def _acquire(self, origin: tuple[str, str, int]) -> _Conn:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                conn.reused = True
                return conn
            conn.close()
        scheme, host, port = origin
        reader, writer = await asyncio.open_connection(
            host, port, ssl=True if scheme == "https" else None, limit=1 << 20
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    def _release(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _exchange(
        self, conn: _Conn, payload: bytes, method: str, max_body: int | None
    ) -> tuple[HttpResponse, bool]:
        conn.writer.write(payload)
        await conn.writer.drain()
        try:
            # The status line and the headers in one read (a read per line cost 10 awaits).
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if conn.reused:
                raise _StaleConnectionError from exc
            raise
        except asyncio.LimitOverrunError as exc:
            raise ValueError("response headers over 1 MiB") from exc
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        pieces = status_line.split(" ", 2)
        if len(pieces) < 2 or not pieces[0].startswith("HTTP/1."):
            raise ValueError(f"malformed status line {status_line[:80]!r}")
        status = int(pieces[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close" and pieces[0] != "HTTP/1.0"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return HttpResponse(status, headers, b""), keep
        limit = max_body if max_body is not None else 1 << 62
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(conn.reader, limit)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            _check_size(length, limit)
            body = await conn.reader.readexactly(length)
        else:
            body = await conn.reader.read(limit + 1)
            _check_size(len(body), limit)
            keep = False
        return HttpResponse(status, headers, body), keep

    async def close(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class ResponseTooLargeError(ValueError):
    """The response body is over the caller's limit."""


def _check_size(length: int, limit: int) -> None:
    if length > limit:
        raise ResponseTooLargeError(f"response body of {length} bytes is over the limit of {limit}")


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        total += size
        _check_size(total, limit)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
