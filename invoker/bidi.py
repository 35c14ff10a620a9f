"""Bidirectional attempts over HTTP/2: every step acknowledged as it commits, N steps in one
request.

A deployment that announces ``BIDI_STREAM`` (the official SDKs served over HTTP/2 do) keeps its
request and response streams open together. The engine sends ``Start`` and the journal, then
reads the handler's messages as they come. Whenever they hold something the handler waits for
(a run's result, a lazy state read, a call's invocation id), they are committed at once, as a
checkpoint (:meth:`invoker.settle.Settler.checkpoint`: journal, state, effects, lease renewed,
fenced by the invocation record's version), and the notifications that commit produced are
sent back on the stream. Notifications that arrive from elsewhere while the stream is open
(a call's result, an awakeable, a sleep that fell due) are committed and sent the same way.
When nothing happens for the handler's inactivity timeout, the engine closes its side of the
stream and the handler suspends. The handler's last messages (End, Suspension or Error) settle
the attempt as in request-response mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backends.api import ConflictError
from invoker import records as rec
from invoker.attempt import Prepared
from invoker.commit import CommitUnknownError
from invoker.config import EngineConfig
from invoker.drivers import Drivers
from invoker.http2_client import (
    REFUSED_RETRIES,
    Http2Error,
    Http2GoawayError,
    Http2RefusedError,
    Http2Stream,
)
from invoker.journal import Pending, take_pending
from invoker.policies import Policies
from invoker.ports import Claimed
from invoker.processing import (
    AttemptError,
    AttemptInput,
    Entry,
    Processed,
    ProtocolViolation,
    process,
)
from invoker.settle import Continue, Settler
from invoker.store import Store
from invoker.transport import Transports
from restate_lambda.clock import Clock
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.framing import FrameDecoder, encode_raw
from restate_lambda.protocol.messages import MessageType as T

log = logging.getLogger("restate_lambda.bidi")

_TERMINAL = frozenset({int(T.END), int(T.SUSPENSION), int(T.ERROR)})
#: How long a handler's pause must last before its state writes are committed on their own.
_FLUSH_AFTER_S = 0.005


class _Lost(Exception):
    """The attempt lost the invocation (killed, paused, taken over) while it streamed."""


class _Refused(Exception):
    """The deployment refused the attempt's stream before answering it: open another."""


class _Bell:
    """What an attempt waits on between its steps: news on its stream (a chunk, the end), a
    wake-up from its driver (a notification arrived), or a deadline. One future and one timer
    handle per wait, where a task per source, ``asyncio.wait`` and ``asyncio.wait_for`` were
    about 5 % of the runtime's CPU per HTTP/2 call under load (py-spy, counter adds)."""

    __slots__ = ("_waiter", "woken")

    def __init__(self) -> None:
        #: The driver asked the attempt to look again (cleared by whoever consumes it).
        self.woken = False
        self._waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        """Wake the waiter, if any (it then looks at what changed)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """The driver's wake-up: remembered until consumed."""
        self.woken = True
        self.ring()

    async def wait(self, timeout: float) -> None:
        """Until :meth:`ring` or ``timeout`` seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Bidi:
    """Runs bidirectional attempts."""

    def __init__(
        self,
        store: Store,
        settler: Settler,
        transports: Transports,
        drivers: Drivers,
        policies: Policies,
        clock: Clock,
        config: EngineConfig,
    ) -> None:
        self._store = store
        self._settler = settler
        self._transports = transports
        self._drivers = drivers
        self._policies = policies
        self._clock = clock
        self._config = config

    async def run(
        self, st: Claimed, prepared: Prepared, state: dict[str, bytes], state_version: int
    ) -> Continue | None:
        """Run one bidirectional attempt of ``st`` to its end and settle it."""
        inv = st.inv
        exchange = self._transports.sign(prepared.exchange)
        url = prepared.address.rstrip("/") + exchange.path
        # A stream the deployment refused (GOAWAY, REFUSED_STREAM: say, a server recycling its
        # connection) ran nothing: it is opened again on another connection, not retried later.
        for tries_left in range(REFUSED_RETRIES, -1, -1):
            try:
                stream = await self._transports.http2.client.open(
                    "POST", url, exchange.headers, exchange.body
                )
            except Http2Error as exc:
                if isinstance(exc, Http2RefusedError) and tries_left:
                    log.debug("invocation %s: stream refused (%s); opening another", inv.id, exc)
                    continue
                await self._settler.fail(st, AttemptError(503, f"{url}: {exc}"))
                return None
            attempt = _Attempt(self, st, stream, state, state_version, may_retry=tries_left > 0)
            self._drivers.watch(inv.id, attempt.bell.wake)
            try:
                return await attempt.run()
            except _Refused as refused:
                log.debug(
                    "invocation %s: stream refused (%s); opening another", inv.id, refused.__cause__
                )
                continue
            except _Lost:
                log.info("invocation %s changed while its attempt streamed; dropping it", inv.id)
                self._drivers.dispatch(inv.id)
                return None
            finally:
                self._drivers.unwatch(inv.id)
                attempt.close()
        raise AssertionError("unreachable")


class _Attempt:
    """The state of one bidirectional attempt."""

    def __init__(
        self,
        owner: Bidi,
        st: Claimed,
        stream: Http2Stream,
        state: dict[str, bytes],
        state_version: int,
        *,
        may_retry: bool = False,
    ) -> None:
        self.o = owner
        self.st = st
        self.stream = stream
        #: A refused stream raises _Refused (the caller opens another) instead of failing.
        self.may_retry = may_retry
        self.state = state
        self.state_version = state_version
        self.pending: list[Entry] = []  # messages received, not committed yet
        self.decoder = FrameDecoder(owner._config.max_response_bytes)
        self.received = 0
        self.bell = _Bell()
        stream.listen(self.bell.ring)
        #: Why the stream broke (the "broken" outcome of :meth:`_next`).
        self.broken: Http2Error | None = None
        #: Uncommitted messages nothing waits on (a state write): committed when the handler
        #: pauses this long, so that what it wrote is visible while it waits on something else.
        self.flush_at: float | None = None

    def close(self) -> None:
        # Our side of the stream is still open (the handler ended its own): reset it, which
        # frees the stream on the connection whatever state it is in.
        self.stream.cancel()

    def _inactivity_s(self) -> float:
        return self.o._policies.inactivity_timeout_s(self.st.inv)

    async def run(self) -> Continue | None:
        settler = self.o._settler
        st = self.st
        try:
            status = await self._response()
        except (TimeoutError, Http2Error) as exc:
            if isinstance(exc, Http2RefusedError) and self.may_retry:
                raise _Refused from exc
            reason = str(exc) or f"none within {self._inactivity_s():g} s"
            await settler.fail(
                st,
                AttemptError(
                    503,
                    f"no response from the deployment: {reason}",
                    next_retry_delay_ms=_soon(exc),
                ),
            )
            return None
        if status != 200:
            body = await self._read_some()
            snippet = body[:300].decode("utf-8", "replace")
            await settler.fail(
                st,
                AttemptError(
                    status if status >= 400 else 500,
                    f"deployment answered HTTP {status} for {st.inv.service}/{st.inv.handler}: "
                    f"{snippet}",
                ),
            )
            return None
        ct = self.stream.headers.get("content-type", "")
        if not ct.startswith("application/vnd.restate.invocation.v"):
            await settler.fail(
                st, AttemptError(571, f"deployment answered with content-type {ct!r}")
            )
            return None
        closed_input = False
        while True:
            try:
                outcome = await self._next(closed_input)
            except _TooLarge:
                await settler.fail(
                    st,
                    AttemptError(
                        500,
                        f"the deployment's response is over the limit of "
                        f"{self.o._config.max_response_bytes} bytes",
                    ),
                )
                return None
            if outcome == "data":
                if self._terminal_seen():
                    break
                if not closed_input and not await self._commit_if_awaited():
                    loop = asyncio.get_running_loop()
                    self.flush_at = loop.time() + _FLUSH_AFTER_S if self.pending else None
            elif outcome == "flush":
                self.flush_at = None
                if self.pending and not closed_input:
                    await self._commit(Pending())
            elif outcome == "wakeup":
                if not closed_input:
                    await self._absorb()
            elif outcome == "idle":
                if closed_input:
                    await settler.fail(st, AttemptError(503, "the deployment stopped answering"))
                    return None
                # Nothing for the handler to wait on soon: let it suspend.
                try:
                    await self.stream.end()
                except Http2Error as exc:
                    await settler.fail(st, AttemptError(503, f"the stream broke: {exc}"))
                    return None
                closed_input = True
            elif outcome == "broken":
                assert self.broken is not None
                await settler.fail(
                    st,
                    AttemptError(
                        503,
                        f"the stream broke: {self.broken}",
                        next_retry_delay_ms=_soon(self.broken),
                    ),
                )
                return None
            else:  # the stream ended without End, Suspension or Error
                await settler.fail(
                    st,
                    AttemptError(
                        571, "protocol violation: the stream ended without End, Suspension or Error"
                    ),
                )
                return None
        try:
            processed = process(self.pending, self._input(0))
        except ProtocolViolation as exc:
            await settler.fail(st, AttemptError(571, f"protocol violation: {exc}"))
            return None
        return await settler.settle(st, processed, self.state_version)

    async def _read_some(self) -> bytes:
        chunks: list[bytes] = []
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                while (chunk := await self.stream.receive()) is not None and len(chunks) < 8:
                    chunks.append(chunk)
        return b"".join(chunks)

    async def _response(self) -> int:
        """Wait for the response headers (up to the inactivity timeout); the status code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._inactivity_s()
        while not self.stream.has_answer():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError()
            await self.bell.wait(remaining)
        return self.stream.answered()

    async def _next(self, closed_input: bool) -> str:
        """Wait for the next thing that happens: "data", "wakeup", "flush", "idle", "end" (the
        stream ended) or "broken" (it failed: :attr:`broken` says why)."""
        loop = asyncio.get_running_loop()
        timeout = self._inactivity_s()
        if self.flush_at is not None:
            timeout = min(timeout, max(0.0, self.flush_at - loop.time()))
        next_wake = min((w for _cid, w in self.st.inv.timers), default=None)
        if next_wake is not None and not closed_input:
            timeout = min(timeout, max(0.0, (next_wake - self.o._clock.now_ms()) / 1000))
        deadline = loop.time() + timeout
        while True:
            if self.stream.ready():
                try:
                    chunk = self.stream.take()
                except Http2Error as exc:
                    self.broken = exc
                    return "broken"
                if chunk is None:
                    return "end"
                self.received += len(chunk)
                if self.received > self.o._config.max_response_bytes:
                    raise _TooLarge()
                try:
                    frames = self.decoder.feed(chunk)
                except ProtocolError:
                    return "end"
                self.pending.extend((f.type, f.payload) for f in frames)
                return "data"
            if self.bell.woken:
                self.bell.woken = False
                return "wakeup"
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self.bell.wait(remaining)
        if self.flush_at is not None and loop.time() >= self.flush_at:
            return "flush"
        if next_wake is not None and self.o._clock.now_ms() >= next_wake and not closed_input:
            return "wakeup"  # a sleep fell due
        return "idle"

    def _terminal_seen(self) -> bool:
        return any(ty in _TERMINAL for ty, _payload in self.pending)

    def _input(self, arrived: int) -> AttemptInput:
        inv = self.st.inv
        return AttemptInput(
            invocation_id=inv.id,
            service=inv.service,
            handler=inv.handler,
            key=inv.key,
            service_kind=inv.service_kind,
            can_write_state=rec.writes_state(inv),
            journal_len=inv.journal_len + arrived,
            commands_len=inv.commands_len,
            state=self.state,
            now_ms=self.o._clock.now_ms(),
        )

    async def _commit_if_awaited(self) -> bool:
        """Commit what arrived if the handler may wait on something in it: a result the commit
        produces (a run's, a state read's, a call's id), a sleep, or an effect on another
        invocation whose answer comes back here. State writes alone wait for the next commit."""
        try:
            partial = process(self.pending, self._input(0), final=False)
        except ProtocolViolation:
            return True  # settled as a violation when the attempt ends
        produced = any(ty >= 0x8000 for ty, _payload in partial.entries)
        if produced or partial.timers or partial.effects:
            await self._commit(Pending(), partial)
            self.flush_at = None
            return True
        return False

    async def _absorb(self) -> None:
        """Commit and send what arrived for the invocation (notifications, due sleeps).

        A wake-up with nothing to commit may mean the invocation changed under the attempt
        (paused, resumed, killed by an admin): then the attempt has lost it and ends at once,
        rather than holding the invocation's driver until the handler's inactivity timeout.
        (With something to commit, the commit's fence finds out.)"""
        st = self.st
        loaded = await self.o._store.with_pending(st.inv, st.version, st.entries)
        arrived = take_pending(loaded, self.o._clock.now_ms())
        if arrived.entries or arrived.changed:
            await self._commit(arrived)
        elif st.unsaved is None:
            current = await self.o._store.invocation(st.inv.id)
            if current is None or current.version != st.version:
                raise _Lost()

    async def _commit(self, arrived: Pending, processed: Processed | None = None) -> None:
        """Checkpoint the pending messages (after ``arrived``) and send their notifications.

        ``processed``: the pending messages already processed with nothing arrived ahead of
        them (``arrived`` empty), which spares processing them twice."""
        st = self.st
        if processed is not None and not arrived.entries:
            p = processed
        else:
            try:
                p = process(self.pending, self._input(len(arrived.entries)), final=False)
            except ProtocolViolation:
                return
        try:
            await self.o._settler.checkpoint(st, p, self.state_version, arrived, st.inv.journal_len)
        except ConflictError as exc:
            raise _Lost from exc
        except CommitUnknownError:
            raise
        if p.state_changed and st.inv.key is not None and p.state is not None:
            self.state = p.state
            self.state_version += 1
        self.pending = []
        out = [*arrived.entries, *(e for e in p.entries if e[0] >= 0x8000)]
        if out:
            try:
                await self.stream.send(b"".join(encode_raw(ty, payload) for ty, payload in out))
            except Http2Error:
                pass  # the stream broke: the handler's next attempt replays the journal


class _TooLarge(Exception):
    """The deployment sent more than the response limit."""


def _soon(exc: BaseException) -> int | None:
    """The retry delay of an attempt whose stream ``exc`` broke: none for a deployment that
    closed its connection gracefully (a server recycling connections, as hypercorn does every
    1,000 requests, asks for a new connection, not for a pause); the retry policy's otherwise."""
    return 0 if isinstance(exc, Http2GoawayError) else None
