"""A small HTTP/1.1 client for request-response exchanges with handler deployments.

Why not httpx: per request it costs several times the CPU of the whole exchange here (it probes
for async libraries on every call), and it writes headers and body in separate segments, which
Nagle's algorithm plus delayed ACKs turn into tens of milliseconds. This client keeps
connections alive per origin, sets ``TCP_NODELAY``, writes each request in one segment and
reads ``content-length``, chunked or close-delimited bodies.

Why an :class:`asyncio.Protocol` and not asyncio's streams: the response is parsed as its bytes
arrive (:class:`_Response`, in ``data_received``), and the request waits on one future, however
many segments the response comes in (a chunked response from uvicorn is three: head, chunk,
end). The stream version awaited a ``drain``, a ``readuntil`` for the head and one read per
chunk, each through the stream's own protocol layer: 4.6 % of the dev server's CPU in
``asyncio/streams.py`` and 4.4 % in this module under the counter benchmark (py-spy).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

#: Status line and headers of a response may take this many bytes; a chunk-size line too.
MAX_HEAD_BYTES = 1 << 20


class HttpClientError(Exception):
    """The exchange failed: connection refused or reset, timeout, or a malformed response."""


class ResponseTooLargeError(ValueError):
    """The response body is over the caller's limit."""


@dataclass(slots=True)
class HttpResponse:
    """Status, lower-cased headers and body of a response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _StaleConnectionError(Exception):
    """A kept-alive connection was closed by the server before it answered."""


# Body framing of a response.
_SIZED, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)
# Where a chunked body is.
_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(4)


class _Response:
    """One response, parsed from the bytes as they arrive.

    :meth:`feed` takes what the connection received; it returns True once the response is
    complete (anything after it stays in the buffer) and raises ValueError if it is malformed
    or over a limit. :meth:`finish` is called when the server closed the connection.
    """

    __slots__ = (
        "body",
        "chunk_left",
        "chunk_state",
        "framing",
        "headers",
        "keep",
        "left",
        "limit",
        "method",
        "scanned",
        "status",
        "total",
    )

    def __init__(self, method: str, limit: int) -> None:
        self.method = method
        self.limit = limit
        self.status = 0  # 0: the head is not complete yet
        self.headers: dict[str, str] = {}
        self.keep = True
        self.framing = _NONE
        self.left = 0
        self.body: list[bytes] = []
        self.total = 0
        self.chunk_state = _CHUNK_SIZE
        self.chunk_left = 0
        self.scanned = 0  # bytes of the buffer already searched for the end of a line

    def feed(self, buf: bytearray) -> bool:
        if not self.status and not self._head(buf):
            return False
        if self.framing == _SIZED:
            take = min(self.left, len(buf))
            if take:
                self.body.append(bytes(buf[:take]))
                del buf[:take]
                self.left -= take
            return self.left == 0
        if self.framing == _CHUNKED:
            return self._chunks(buf)
        if self.framing == _UNTIL_CLOSE:
            self._grow(len(buf))
            self.body.append(bytes(buf))
            buf.clear()
            return False
        return True

    def finish(self) -> bool:
        """The connection closed: True if that completed the response (a close-delimited
        body)."""
        return self.status != 0 and self.framing == _UNTIL_CLOSE

    def response(self) -> HttpResponse:
        return HttpResponse(self.status, self.headers, b"".join(self.body))

    def _line_end(self, buf: bytearray, sep: bytes, what: str) -> int:
        """Index just past the first ``sep`` in ``buf`` (-1: not there yet)."""
        at = buf.find(sep, max(self.scanned - len(sep) + 1, 0))
        if at < 0:
            self.scanned = len(buf)
            if len(buf) > MAX_HEAD_BYTES:
                raise ValueError(f"{what} over 1 MiB")
            return -1
        self.scanned = 0
        if at > MAX_HEAD_BYTES:
            raise ValueError(f"{what} over 1 MiB")
        return at + len(sep)

    def _head(self, buf: bytearray) -> bool:
        end = self._line_end(buf, b"\r\n\r\n", "response headers")
        if end < 0:
            return False
        status_line, *lines = buf[: end - 4].decode("latin-1").split("\r\n")
        del buf[:end]
        pieces = status_line.split(" ", 2)
        if len(pieces) < 2 or not pieces[0].startswith("HTTP/1."):
            raise ValueError(f"malformed status line {status_line[:80]!r}")
        status = int(pieces[1])
        if not 100 <= status <= 999:
            raise ValueError(f"malformed status line {status_line[:80]!r}")
        headers = self.headers
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.status = status
        self.keep = headers.get("connection", "").lower() != "close" and pieces[0] != "HTTP/1.0"
        if self.method == "HEAD" or status in (204, 304) or status < 200:
            self.framing = _NONE
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            self.framing = _CHUNKED
        elif "content-length" in headers:
            self.framing = _SIZED
            self.left = int(headers["content-length"])
            if self.left < 0:
                raise ValueError(f"negative content-length {self.left}")
            self._grow(self.left)
        else:
            self.framing = _UNTIL_CLOSE
            self.keep = False
        return True

    def _chunks(self, buf: bytearray) -> bool:
        while True:
            state = self.chunk_state
            if state == _CHUNK_DATA:
                take = min(self.chunk_left, len(buf))
                if take:
                    self.body.append(bytes(buf[:take]))
                    del buf[:take]
                    self.chunk_left -= take
                if self.chunk_left:
                    return False
                self.chunk_state = _CHUNK_END
                continue
            end = self._line_end(buf, b"\r\n", "a line of the chunked body")
            if end < 0:
                return False
            line = bytes(buf[: end - 2])
            del buf[:end]
            if state == _CHUNK_SIZE:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError(f"negative chunk size {size}")
                if size == 0:
                    self.chunk_state = _TRAILERS
                else:
                    self._grow(size)
                    self.chunk_left = size
                    self.chunk_state = _CHUNK_DATA
            elif state == _CHUNK_END:
                if line:
                    raise ValueError("malformed chunked body: no CRLF after a chunk")
                self.chunk_state = _CHUNK_SIZE
            elif not line:  # the empty line after the trailers
                return True

    def _grow(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise ResponseTooLargeError(
                f"response body of {self.total} bytes is over the limit of {self.limit}"
            )


class _Conn(asyncio.Protocol):
    """One connection to an origin; at most one exchange on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.reused = False
        self.closed = False
        self.received = False  # any byte of the current response
        self._response: _Response | None = None
        self._done: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport; both have its methods.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        response, done = self._response, self._done
        if response is None or done is None or done.done():
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        self.received = True
        try:
            complete = response.feed(self.buf)
        except ValueError as exc:
            done.set_exception(exc)
            self.close()
            return
        if complete:
            done.set_result(None)

    def eof_received(self) -> bool:
        self._end(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        self.closed = True
        done, response = self._done, self._response
        if done is None or done.done() or response is None:
            return
        if response.finish():
            done.set_result(None)
        elif self.reused and not self.received:
            done.set_exception(_StaleConnectionError())
        else:
            done.set_exception(
                exc
                if exc is not None
                else asyncio.IncompleteReadError(b"", None)  # closed mid-response
            )

    # -- exchange ----------------------------------------------------------------------------

    def usable(self) -> bool:
        return (
            not self.closed
            and not self.buf
            and self.transport is not None
            and (not self.transport.is_closing())
        )

    async def exchange(
        self, payload: bytes, method: str, limit: int, deadline: float
    ) -> tuple[HttpResponse, bool]:
        """Send ``payload``, wait for the whole response until ``deadline`` (loop time;
        TimeoutError after it)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        response = self._response = _Response(method, limit)
        done = self._done = loop.create_future()
        # One timer handle, not asyncio.timeout(): 2.7 % of the dev server's CPU per call.
        timer = loop.call_at(deadline, _expire, done)
        self.received = False
        try:
            self.transport.write(payload)
            if self.closed and not done.done():
                self._end(None)
            await done
        finally:
            timer.cancel()
            self._response = self._done = None
        return response.response(), response.keep and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_exception(TimeoutError())


_Origin = tuple[str, str, int]


class HttpClient:
    """Keep-alive HTTP/1.1 client (plain HTTP; HTTPS through ``ssl`` when the URL asks)."""

    def __init__(self, max_idle_per_origin: int = 64) -> None:
        self._idle: dict[_Origin, list[_Conn]] = {}
        self._max_idle = max_idle_per_origin
        #: url -> (origin, request target, host header): deployments are called at few URLs.
        self._urls: dict[str, tuple[_Origin, str, str]] = {}

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
        origin, target, host_header = self._parse(url)
        head = [f"{method} {target} HTTP/1.1", f"host: {host_header}"]
        for k, v in headers.items():
            head.append(f"{k}: {v}")
        if method not in ("GET", "HEAD") or body:
            head.append(f"content-length: {len(body)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        limit = max_body if max_body is not None else 1 << 62
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for _ in range(3):
                conn = await self._acquire(origin, deadline)
                try:
                    response, keep = await conn.exchange(payload, method, limit, deadline)
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

    def _parse(self, url: str) -> tuple[_Origin, str, str]:
        known = self._urls.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        parsed = ((scheme, host, port), target, host_header)
        if len(self._urls) >= 1024:
            self._urls.clear()
        self._urls[url] = parsed
        return parsed

    async def _acquire(self, origin: _Origin, deadline: float) -> _Conn:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(deadline):
            _, conn = await loop.create_connection(
                _Conn, host, port, ssl=True if scheme == "https" else None
            )
        return conn

    def _release(self, origin: _Origin, conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
