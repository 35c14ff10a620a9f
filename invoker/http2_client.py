"""An HTTP/2 cleartext client (h2c with prior knowledge) for deployments, on ``jh2``.

restate-server talks HTTP/2 to deployments unless told ``use_http_11``, and the official SDKs
served the default way (``restate.serve()`` in TypeScript, hypercorn for Python) speak only
that. Over HTTP/2 a deployment announces ``BIDI_STREAM``: the request and the response stream
at the same time, so the runtime can acknowledge each step as it commits.

The protocol state machine (frames, HPACK, flow control) is ``jh2``, a maintained fork of the
``h2`` package with the same API whose HPACK coder is compiled (Rust). Measured here with the
runtime's real request headers: opening a stream (``send_headers``) costs 55-85 us of CPU
against 105-135 us with ``h2``, a whole request-response exchange on the client side about
160 us against 225 us, and under HTTP/2 load the runtime's CPU per counter call fell by about
7 % (alternating runs, noisy). This module drives it over an asyncio connection: one
connection per origin, any number of concurrent streams on it, a reader task dispatching
events to streams. Why not httpx's HTTP/2: it sends the whole request body before it reads the
response, which rules out a bidirectional stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jh2 as h2  # h2's API under another name (see above)
import jh2.config
import jh2.connection
import jh2.errors
import jh2.events
import jh2.exceptions
import jh2.settings

from invoker.goaway_cut import Goaway, GoawayCut

#: How many times a stream the deployment refused is opened again before the refusal counts as
#: the attempt's failure.
REFUSED_RETRIES = 3


class Http2Error(Exception):
    """The connection or the stream failed."""


class Http2RefusedError(Http2Error):
    """The deployment did not process the stream: it was above the last stream id of the
    connection's GOAWAY, or reset with ``REFUSED_STREAM``. HTTP/2 says such a request may be
    sent again as it is (RFC 9113, 8.7): nothing of it ran."""


class Http2GoawayError(Http2Error):
    """The deployment closed the connection gracefully (GOAWAY, ``NO_ERROR``: a server recycling
    its connection) while this stream was at or below the GOAWAY's last stream id: the server
    may still be running it, but h2 takes no frame after a GOAWAY, so its answer is lost. The
    request may have run in part; the server asked for a new connection, not for a pause."""


@dataclass(slots=True)
class _StreamState:
    headers: asyncio.Future[list[tuple[str, str]]]
    #: Response body chunks not read yet.
    chunks: deque[bytes] = field(default_factory=deque)
    #: No chunk follows those queued (the stream ended, or failed: then ``error`` says why).
    ended: bool = False
    window: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    #: A reader waiting in :meth:`Http2Stream.receive`.
    waiter: asyncio.Future[None] | None = None
    #: Called whenever the stream has news (headers, a chunk, its end): see
    #: :meth:`Http2Stream.listen`.
    listener: Callable[[], None] | None = None

    def changed(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.listener is not None:
            self.listener()


class Http2Stream:
    """One request/response stream; both directions may be open at once."""

    def __init__(
        self, conn: _Connection, stream_id: int, state: _StreamState, *, ended_out: bool = False
    ) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._state = state
        self.status = 0
        self.headers: dict[str, str] = {}
        #: The request side is closed (its end was sent).
        self.ended_out = ended_out

    async def response(self) -> int:
        """Wait for the response headers; the status code."""
        await self._state.headers
        return self.answered()

    def has_answer(self) -> bool:
        """The response headers arrived (or the stream failed before them)."""
        return self._state.headers.done()

    def answered(self) -> int:
        """The status code of the response whose headers arrived (:meth:`has_answer`)."""
        raw = self._state.headers.result()
        self.headers = {k: v for k, v in raw if not k.startswith(":")}
        self.status = int(dict(raw).get(":status", "0"))
        return self.status

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the stream has news: its response headers, a chunk, its
        end or its failure. A reader that waits on several things at once (the bidirectional
        attempt) then checks :meth:`has_answer` and :meth:`ready` instead of a task per source."""
        self._state.listener = listener

    async def send(self, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` on the request stream (waiting for flow-control credit)."""
        await self._conn.send_data(self.stream_id, self._state, data, end)
        if end:
            self.ended_out = True

    async def end(self) -> None:
        """Close the request side (the deployment sees the end of its input)."""
        if not self.ended_out:
            await self.send(b"", end=True)

    async def receive(self) -> bytes | None:
        """The next chunk of the response body; None at its end."""
        state = self._state
        while not state.chunks and not state.ended:
            state.waiter = asyncio.get_running_loop().create_future()
            try:
                await state.waiter
            finally:
                state.waiter = None
        return self.take()

    def ready(self) -> bool:
        """:meth:`take` has something: a chunk, the end, or the failure."""
        return bool(self._state.chunks) or self._state.ended

    def take(self) -> bytes | None:
        """The next chunk when :meth:`ready`: a chunk, or None at the end (a failed stream
        raises :class:`Http2Error` once its chunks are read)."""
        state = self._state
        if state.chunks:
            chunk = state.chunks.popleft()
            self._conn.consumed(self.stream_id, len(chunk))
            return chunk
        if state.error is not None:
            raise _as_http2_error(state.error) from state.error
        return None

    def cancel(self) -> None:
        """Reset the stream (the attempt is over early)."""
        self._conn.reset(self.stream_id)


class _Connection:
    """One h2c connection and the streams on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        # Our own request headers need no checking again: names are lower-cased and
        # connection-specific ones dropped in ``open``, values come from the engine and from
        # the deployment's headers, checked at registration (``check_additional_headers``).
        # h2's checks of them cost about 35 us of CPU per stream (measured: opening and resetting
        # streams with and without), 2 % of an HTTP/2 call. The deployment's are still checked.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _StreamState] = {}
        self.closed = False
        #: The deployment's limit of concurrent streams was reached on this connection.
        self.full = False
        self._lock = asyncio.Lock()
        self._reader_task: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._goaway_cut = GoawayCut()

    def open_streams(self) -> int:
        """Streams open on this connection (by the protocol's count)."""
        return int(self.h2.open_outbound_streams)

    def max_streams(self) -> int:
        """The deployment's limit of concurrent streams."""
        return int(self.h2.remote_settings.max_concurrent_streams)

    async def start(self) -> None:
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window((1 << 24) - 65535)
        await self._flush()
        self._reader_task = asyncio.ensure_future(self._read_loop())

    async def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except OSError as exc:  # reset by the peer, e.g. a server that speaks only HTTP/1.1
                self.closed = True
                raise Http2Error(f"connection lost ({exc})") from exc

    def _flush_soon(self) -> None:
        """Send what h2 has to send at the end of this turn of the event loop: the frames of
        several streams (resets, window updates) then leave in one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def open(
        self,
        method: str,
        path: str,
        authority: str,
        headers: dict[str, str],
        body: bytes = b"",
        end: bool = False,
    ) -> tuple[Http2Stream, int]:
        """Open a stream: its headers and as much of ``body`` as one frame and the window take,
        sent together at the end of this turn of the event loop, with what other streams
        opened in it (the deployment reads them at once: about 12 % less of its CPU and 8 % less
        of ours per HTTP/2 counter call, 4 alternating pairs); the stream and the bytes sent."""
        async with self._lock:
            if self.closed:
                raise Http2Error("connection closed")
            stream_id = self.h2.get_next_available_stream_id()
            answer: asyncio.Future[list[tuple[str, str]]] = (
                asyncio.get_running_loop().create_future()
            )
            # A stream's failure also reaches its reader through ``data``; an attempt that ended
            # before awaiting the response must not leave asyncio logging "Future exception was
            # never retrieved" when the connection goes.
            answer.add_done_callback(_retrieve)
            state = _StreamState(answer)
            self.streams[stream_id] = state
            request_headers: Sequence[tuple[str, str]] = [
                (":method", method),
                (":scheme", "http"),
                (":authority", authority),
                (":path", path),
                *((k.lower(), v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP),
            ]
            self.h2.send_headers(stream_id, request_headers, end_stream=end and not body)
            sent = 0
            if body:
                window = self.h2.local_flow_control_window(stream_id)
                sent = min(len(body), window, self.h2.max_outbound_frame_size)
                if sent:
                    self.h2.send_data(stream_id, body[:sent], end_stream=end and sent == len(body))
            self._flush_soon()
        stream = Http2Stream(self, stream_id, state, ended_out=end and sent == len(body))
        return stream, sent

    async def send_data(self, stream_id: int, state: _StreamState, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            if state.error is not None:
                raise _as_http2_error(state.error)
            async with self._lock:
                if self.closed:
                    raise Http2Error("connection closed")
                window = self.h2.local_flow_control_window(stream_id)
                size = min(len(view), window, self.h2.max_outbound_frame_size)
                if size > 0 or (not view and end):
                    last = end and size == len(view)
                    self.h2.send_data(stream_id, bytes(view[:size]), end_stream=last)
                    view = view[size:]
                    await self._flush()
                    if not view:
                        return
                else:
                    state.window.clear()
            if size == 0:
                await state.window.wait()

    def consumed(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
            self.h2.acknowledge_received_data(size, stream_id)
        self._flush_soon()

    def reset(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.H2Error, KeyError):
            self.h2.reset_stream(stream_id)
        self.streams.pop(stream_id, None)
        self._flush_soon()

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    error = Http2Error("the deployment closed the connection")
                    break
                # h2 takes no frame after a GOAWAY, not even those after it in the same read
                # (it raises, and the read's events are lost): GOAWAYs go around it.
                data, goaways = self._goaway_cut.feed(data)
                for event in self.h2.receive_data(data) if data else ():
                    self._on(event)
                for goaway in goaways:
                    self._on_goaway(goaway)
                self._flush_soon()
                if self.closed and not self.streams:
                    # After a GOAWAY (h2 takes no frame after it): nothing more to read.
                    error = Http2Error("the deployment closed the connection (GOAWAY)")
                    break
        except (OSError, h2.exceptions.H2Error, asyncio.IncompleteReadError) as exc:
            error = exc
        except asyncio.CancelledError:
            error = Http2Error("connection closed")
            raise
        finally:
            self.closed = True
            for state in self.streams.values():
                cause = state.error or error
                self._fail(state, Http2Error(str(cause) if cause else "connection closed"))
            self.streams.clear()
            self.writer.close()

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            state = self.streams.get(event.stream_id)
            if state is not None and not state.headers.done():
                state.headers.set_result([(str(k), str(v)) for k, v in event.headers])
                state.changed()
        elif isinstance(event, h2.events.DataReceived):
            state = self.streams.get(event.stream_id)
            if state is not None:
                state.chunks.append(bytes(event.data))
                state.changed()
            else:
                self.consumed(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            state = self.streams.pop(event.stream_id, None)
            if state is not None:
                state.ended = True
                state.changed()
        elif isinstance(event, h2.events.StreamReset):
            state = self.streams.pop(event.stream_id, None)
            if state is not None:
                if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    self._fail(state, Http2RefusedError("the deployment refused the stream"))
                else:
                    self._fail(
                        state,
                        Http2Error(f"stream reset by the deployment (code {event.error_code})"),
                    )
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                for state in self.streams.values():
                    state.window.set()
            else:
                state = self.streams.get(event.stream_id)
                if state is not None:
                    state.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            # GOAWAY frames are taken out before h2 sees them (``_read_loop``): this is h2
            # ending the connection itself.
            last = event.last_stream_id if event.last_stream_id is not None else 0
            self._on_goaway(Goaway(last, int(event.error_code or 0)))

    def _on_goaway(self, goaway: Goaway) -> None:
        """The streams above the GOAWAY's last stream id were not processed: they fail as
        refused (opened again elsewhere at once). Those at or below it may still be answered
        by the protocol, but hypercorn, on h2 too, cannot send a frame after its own GOAWAY:
        they fail now, as a graceful close (retried at once) when the GOAWAY has no error
        code, rather than at the inactivity timeout."""
        self.closed = True
        last = goaway.last_stream_id
        for stream_id, state in self.streams.items():
            error: Http2Error
            if stream_id > last:
                error = Http2RefusedError(
                    f"the deployment closes the connection (GOAWAY, last stream {last})"
                )
            elif goaway.error_code == h2.errors.ErrorCodes.NO_ERROR:
                error = Http2GoawayError(
                    "the deployment closed the connection (GOAWAY) with the stream open"
                )
            else:
                error = Http2Error(
                    f"the deployment closed the connection (GOAWAY, code {goaway.error_code})"
                )
            self._fail(state, error)
        self.streams.clear()

    @staticmethod
    def _fail(state: _StreamState, error: Http2Error) -> None:
        state.error = error
        if not state.headers.done():
            state.headers.set_exception(error)
        state.ended = True
        state.window.set()
        state.changed()

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
        self.writer.close()


def _as_http2_error(error: BaseException) -> Http2Error:
    """A stream's failure as raised to its user, a new exception each time; its kind stays
    (a refusal may be retried at once, a graceful GOAWAY soon)."""
    if isinstance(error, Http2Error):
        return type(error)(str(error))
    return Http2Error(str(error))


def _retrieve(future: asyncio.Future[list[tuple[str, str]]]) -> None:
    if not future.cancelled():
        future.exception()


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"}
)


class Http2Client:
    """Opens HTTP/2 streams to deployment URLs: connections per origin, a new one whenever
    the open ones carry as many streams as the deployment allows."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], list[_Connection]] = {}
        self._connecting: dict[tuple[str, int], asyncio.Lock] = {}

    async def open(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        end: bool = False,
    ) -> Http2Stream:
        """Open a stream for ``method url`` and send ``body`` on it (``end``: and end the
        request side); the headers and the body's first frame go in one write."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", ""):
            raise Http2Error(f"{url}: only cleartext HTTP/2 (h2c) is supported")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = host if parts.port is None else f"{host}:{port}"
        for _ in range(3):
            conn = await self._connection((host, port))
            try:
                stream, sent = await conn.open(method, path, authority, headers, body, end)
            except h2.exceptions.TooManyStreamsError:
                conn.full = True
            except Http2Error:
                conn.closed = True
            else:
                if sent < len(body):  # the rest (and the end, if asked) after the window
                    try:
                        await stream.send(body[sent:], end=end)
                    except BaseException:
                        stream.cancel()
                        raise
                return stream
        raise Http2Error(f"{url}: cannot open an HTTP/2 stream")

    async def _connection(self, origin: tuple[str, int]) -> _Connection:
        conns = self._conns.setdefault(origin, [])
        conns[:] = [c for c in conns if not c.closed]
        for conn in conns:
            if not conn.full or conn.open_streams() < conn.max_streams():
                conn.full = False
                return conn
        lock = self._connecting.setdefault(origin, asyncio.Lock())
        async with lock:
            for conn in conns:
                if not conn.closed and not conn.full:
                    return conn
            try:
                reader, writer = await asyncio.open_connection(*origin, limit=1 << 20)
            except OSError as exc:
                raise Http2Error(f"cannot connect to {origin[0]}:{origin[1]}: {exc}") from exc
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(reader, writer)
            await conn.start()
            conns.append(conn)
            return conn

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes, *, max_body: int
    ) -> tuple[int, dict[str, str], bytes]:
        """A whole request and response over one stream (discovery, request-response); a
        stream the deployment refused is sent again on another connection (up to
        :data:`REFUSED_RETRIES` times)."""
        for tries_left in range(REFUSED_RETRIES, -1, -1):
            try:
                stream = await self.open(method, url, headers, body, end=True)
            except Http2RefusedError:
                if not tries_left:
                    raise
                continue
            try:
                status = await stream.response()
                chunks: list[bytes] = []
                size = 0
                while (chunk := await stream.receive()) is not None:
                    size += len(chunk)
                    if size > max_body:
                        raise Http2Error(f"response body over the limit of {max_body} bytes")
                    chunks.append(chunk)
                return status, stream.headers, b"".join(chunks)
            except Http2RefusedError:
                stream.cancel()
                if not tries_left:
                    raise
            except BaseException:
                stream.cancel()
                raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close every connection."""
        conns = [c for cs in self._conns.values() for c in cs]
        self._conns.clear()
        for conn in conns:
            await conn.close()
