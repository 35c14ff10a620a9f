"""The in-process test runtime: engine, store, ingress and admin API with a manual clock.

(Over 500 lines on purpose: :class:`Harness` is the public API of the test kit, one class
whose helpers are documented together; its pieces (time, crash points) live in sibling modules.)

See :mod:`restate_lambda.testing` for the overview and an example.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec

from backends.api import Backend
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from infra.app_check import app_problems
from ingress.admin_app import create_admin_app
from ingress.ingress_app import create_ingress_app
from invoker import keys
from invoker.api import InvokeRequest, NotReadyError, Outcome, Target
from invoker.config import EngineConfig
from invoker.engine import Engine
from invoker.hopeless import reason_of
from invoker.journal import load_partition
from invoker.lifecycle import Action
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from restate_lambda.protocol.messages import describe, parse
from restate_lambda.testing.sdk_time import default_start_ms, handlers_follow

BackendKind = Literal["memory", "sqlite"]

#: ``arg`` of :meth:`Harness.call` when the handler takes no input (sends an empty body).
NO_INPUT: Any = object()


class InvocationFailed(Exception):
    """The invocation ended with a terminal failure (a ``TerminalError``, a kill, a cancel)."""

    def __init__(self, invocation_id: str, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message} (invocation {invocation_id})")
        self.invocation_id = invocation_id
        self.code = code
        self.message = message


class NotCompletedError(Exception):
    """The invocation cannot complete without something the test must do first: advance the
    clock, resolve an awakeable, fix the handler. The message says which."""

    def __init__(self, invocation_id: str, status: str, detail: str) -> None:
        super().__init__(f"invocation {invocation_id} did not complete: {detail}")
        self.invocation_id = invocation_id
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal entry of an invocation, decoded."""

    index: int
    #: message type, e.g. ``"RUN_COMMAND"``, ``"SLEEP_COMPLETION_NOTIFICATION"``
    type: str
    #: the name the handler gave the step (``ctx.run("charge", ...)``), if any
    name: str | None
    #: the decoded protobuf message
    message: Any
    #: the stored bytes (``(type code, payload)``)
    raw: tuple[int, bytes]

    def __str__(self) -> str:
        return f"#{self.index} {self.type}" + (f" {self.name!r}" if self.name else "")


def encode_json(value: Any) -> bytes:
    """JSON bytes of ``value`` (dataclasses, msgspec structs and pydantic models included)."""

    def enc_hook(obj: Any) -> Any:
        dump = getattr(obj, "model_dump", None)
        if dump is not None:
            return dump(mode="json")
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")

    return msgspec.json.encode(value, enc_hook=enc_hook)


class Harness:
    """A whole runtime in this process and event loop, with time under the test's control.

    Args:
        backend: ``"memory"`` (default), ``"sqlite"`` (a file in ``data_dir``, or a temporary
            directory), or a :class:`backends.api.Backend` you built.
        start_ms: where the manual clock starts (default: a whole hour ahead of wall time).
        config: engine settings.
        data_dir: where the SQLite file goes.
        sole: the engine is the backend's only user, as ``restate-lambda dev`` is on its own
            data directory, with the dev server's shortcuts (see ``sole`` of
            :class:`invoker.engine.Engine`). Off by default: :meth:`restart` cuts the old
            engine off, but a write it had started may still land under the new one.

    Use it as ``async with Harness() as h`` (or the ``restate_harness`` pytest fixture).
    While it is open, handlers of both SDKs in this process read its manual clock.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        backend: BackendKind | Backend = "memory",
        *,
        start_ms: int | None = None,
        config: EngineConfig | None = None,
        data_dir: Path | None = None,
        sole: bool = False,
    ) -> None:
        self._sole = sole
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if isinstance(backend, str):
            if backend == "memory":
                backend = MemoryBackend()
            elif backend == "sqlite":
                if data_dir is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="restate-lambda-test-")
                    data_dir = Path(self._tmp.name)
                backend = SqliteBackend(data_dir / "restate-lambda.db")
            else:
                raise ValueError(f"unknown backend {backend!r}: use 'memory' or 'sqlite'")
        self.backend: Backend = backend
        self.config = config
        self.clock = ManualClock(default_start_ms() if start_ms is None else start_ms)
        self._apps: dict[str, Any] = {}
        self._follow = contextlib.ExitStack()
        self.engine = self._new_engine()
        self._ingress: httpx.AsyncClient | None = None
        self._admin: httpx.AsyncClient | None = None
        #: called at the top of every settle round; a crash test restarts the engine there
        self._before_round: Callable[[], Awaitable[None]] | None = None
        self._auto_idempotency: Callable[[str, str], str | None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def _new_engine(self) -> Engine:
        transports = Transports()
        for name, app in self._apps.items():
            transports.asgi.mount(name, app)
        return Engine(self.backend, self.clock, transports, self.config, sole=self._sole)

    @property
    def ingress(self) -> httpx.AsyncClient:
        """An HTTP client of the ingress API (in process): ``await h.ingress.post(...)``."""
        if self._ingress is None:
            self._ingress = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_ingress_app(self.engine)),
                base_url="http://ingress",
                timeout=30,
            )
        return self._ingress

    @property
    def admin(self) -> httpx.AsyncClient:
        """An HTTP client of the admin API (in process)."""
        if self._admin is None:
            self._admin = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_admin_app(self.engine)),
                base_url="http://admin",
                timeout=30,
            )
        return self._admin

    async def _close_clients(self) -> None:
        for client in (self._ingress, self._admin):
            if client is not None:
                await client.aclose()
        self._ingress = None
        self._admin = None

    async def start(self) -> Harness:
        """Start the engine; from now on handlers in this process read the manual clock."""
        self._follow.enter_context(handlers_follow(self.clock))
        await self.engine.start()
        return self

    async def close(self) -> None:
        """Stop the engine, close the clients and the store, give handlers wall time back."""
        try:
            await self._close_clients()
            await self.engine.close()
            await self.backend.close()
        finally:
            self._follow.close()
            if self._tmp is not None:
                self._tmp.cleanup()

    async def __aenter__(self) -> Harness:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def restart(self) -> None:
        """Simulate a crash of the runtime: drop this engine (its in-flight attempts are cut
        off) and go on with a fresh engine on the same store, which recovers the invocations
        left running."""
        await self._close_clients()
        await self.engine.close()
        self.engine = self._new_engine()
        await self.engine.start()
        await self.engine.recover_orphans()

    async def mount(self, app: Any, name: str | None = None) -> dict[str, Any]:
        """Serve an ASGI app of ``restate`` or ``restate_lambda`` services in process and
        register it; returns the deployment (as the admin API shows it).

        Raises:
            TypeError: a handler of the app can never run (e.g. a plain ``def``); the message
                names it with its file and line.
        """
        problems = app_problems(app)
        if problems:
            raise TypeError("; ".join(problems))
        name = name or f"app{len(self._apps) + 1}"
        self._apps[name] = app
        uri = self.engine.transports.asgi.mount(name, app)
        deployment, _ = await self.engine.register_deployment(uri, force=True)
        return deployment

    # -- time -----------------------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        """The manual clock, in epoch milliseconds."""
        return self.clock.now_ms()

    async def settle(self, rounds: int = 500) -> None:
        """Run everything that can run at the current time until nothing is left to do.

        Raises:
            TimeoutError: still busy after ``rounds`` rounds (a handler that never stops).
        """
        for _ in range(rounds):
            if self._before_round is not None:
                await self._before_round()
            await self.engine.tick()
            tasks = self.engine.pending()
            if not tasks:
                await asyncio.sleep(0)
                if not self.engine.pending():
                    return
                continue
            await asyncio.wait(tasks, timeout=5)
        raise TimeoutError("the runtime did not settle: an invocation keeps running")

    async def advance(self, delta: timedelta | int) -> None:
        """Move the clock forward by ``delta`` (a timedelta or milliseconds), firing every timer
        that falls due on the way in order (a handler sleeping three times an hour wakes
        three times in ``advance(timedelta(hours=3))``), and settle."""
        ms = delta if isinstance(delta, int) else round(delta.total_seconds() * 1000)
        if ms < 0:
            raise ValueError("time only moves forward")
        target = self.clock.now_ms() + ms
        await self.settle()
        while True:
            now = self.clock.now_ms()
            upcoming = [
                item.due_ms
                for item in await self.backend.due(target, 64)
                if item.due_ms is not None and item.due_ms > now
            ]
            if not upcoming:
                break
            self.clock.advance(min(upcoming) - now)
            await self.settle()
        self.clock.advance(target - self.clock.now_ms())
        await self.settle()

    # -- invoking -------------------------------------------------------------------------------

    def _request(
        self,
        service: str,
        handler: str,
        arg: Any,
        key: str | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        delay: timedelta | None,
    ) -> InvokeRequest:
        if idempotency_key is None and self._auto_idempotency is not None:
            idempotency_key = self._auto_idempotency(service, handler)
        if arg is NO_INPUT:
            body, content_type = b"", None
        elif isinstance(arg, bytes):
            body, content_type = arg, "application/octet-stream"
        else:
            body, content_type = encode_json(arg), "application/json"
        hdrs = list((headers or {}).items())
        if content_type is not None:
            hdrs.append(("content-type", content_type))
        return InvokeRequest(
            target=Target(service=service, handler=handler, key=key),
            body=body,
            headers=hdrs,
            content_type=content_type,
            idempotency_key=idempotency_key,
            delay_ms=None if delay is None else round(delay.total_seconds() * 1000),
        )

    async def send(
        self,
        service: str,
        handler: str,
        arg: Any = NO_INPUT,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        delay: timedelta | None = None,
    ) -> str:
        """Start an invocation without waiting for it; returns its id.

        ``arg`` is sent as JSON (``bytes`` as they are); ``key`` is the object key or
        workflow id. Nothing runs until you ``settle``, ``advance``, or wait for a result.
        """
        request = self._request(service, handler, arg, key, idempotency_key, headers, delay)
        result = await self.engine.send(request)
        return result.invocation_id

    async def call(
        self,
        service: str,
        handler: str,
        arg: Any = NO_INPUT,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        type: Any = None,
    ) -> Any:
        """Invoke a handler and return its output (decoded JSON, or ``type`` if given).

        Raises:
            InvocationFailed: the handler failed terminally.
            NotCompletedError: it waits for time to pass or for an awakeable, or it is
                retrying a failure, or paused: the message says which.
        """
        inv_id = await self.send(
            service, handler, arg, key=key, idempotency_key=idempotency_key, headers=headers
        )
        return await self.result(inv_id, type=type)

    async def result(self, invocation_id: str, *, type: Any = None) -> Any:
        """Settle, then return the invocation's output (see :meth:`call` for the errors)."""
        await self.settle()
        try:
            outcome = await self.engine.output(invocation_id)
        except NotReadyError:
            status, detail = await self._why_not_done(invocation_id)
            raise NotCompletedError(invocation_id, status, detail) from None
        return _decode_outcome(outcome, type)

    async def _why_not_done(self, invocation_id: str) -> tuple[str, str]:
        found = await self.engine.store.invocation(invocation_id)
        if found is None:
            return "unknown", "no such invocation"
        inv = found.inv
        status = inv.status.value
        now = self.clock.now_ms()
        target = f"{inv.service}/{inv.handler}"
        failure = ""
        reason = reason_of(inv)
        if reason is not None:
            return status, f"{reason} (retrying cannot fix this: {target} is {status})"
        if inv.last_failure is not None:
            related = inv.last_failure_related_command
            where = f" at {related}" if related else ""
            failure = f"; last failure{where}: [{inv.last_failure.code}] {inv.last_failure.message}"
        if status == "paused":
            return status, f"{target} is paused{failure}"
        if status == "backing-off" and inv.next_retry_ms is not None:
            wait = _human_ms(inv.next_retry_ms - now)
            return status, (
                f"{target} failed {inv.retry_count} time(s) and retries in {wait} "
                f"(advance the clock to retry){failure}"
            )
        if status == "suspended":
            waits = []
            if inv.timers:
                earliest = min(wake for _cid, wake in inv.timers)
                waits.append(f"a timer due in {_human_ms(earliest - now)} (advance the clock)")
            if any(idx > 16 for idx in inv.waiting_signals):  # 1..16: built-in (cancel)
                waits.append("an awakeable or a signal (resolve it)")
            if inv.waiting_named_signals:
                waits.append(f"signals {inv.waiting_named_signals}")
            others = len(inv.waiting_completions) - len(inv.timers)
            if others > 0 and not inv.timers:
                waits.append("a call, a promise or another completion")
            return status, f"{target} is suspended, waiting for {' or '.join(waits) or 'input'}"
        if status == "scheduled" and inv.scheduled_ms is not None:
            return status, f"{target} is scheduled in {_human_ms(inv.scheduled_ms - now)}"
        if status == "pending":
            return status, f"{target} is queued behind another invocation of key {inv.key!r}"
        return status, f"{target} is {status}{failure}"

    async def attach(self, invocation_id: str, *, type: Any = None) -> Any:
        """The output of an invocation started by :meth:`send` (same as :meth:`result`)."""
        return await self.result(invocation_id, type=type)

    async def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None:
        """Complete an awakeable with ``value`` (JSON; ``bytes`` as they are) and settle."""
        payload = value if isinstance(value, bytes) else encode_json(value)
        await self.engine.resolve_awakeable(awakeable_id, payload)
        await self.settle()

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Fail an awakeable (the handler gets a ``TerminalError``) and settle."""
        await self.engine.reject_awakeable(awakeable_id, reason)
        await self.settle()

    async def manage(self, invocation_id: str, action: Action) -> None:
        """``cancel``, ``kill``, ``pause``, ``resume`` or ``purge`` an invocation, then settle."""
        await self.engine.manage_invocation(invocation_id, action)
        await self.settle()

    # -- looking inside ---------------------------------------------------------------------

    async def state(self, service: str, key: str, *, raw: bool = False) -> dict[str, Any]:
        """The K/V state of an object or workflow instance, values decoded from JSON (or
        ``bytes`` if they are not JSON, or if ``raw``)."""
        state = await self.engine.get_state(service, key)
        if raw:
            return dict(state)
        return {name: _maybe_json(value) for name, value in state.items()}

    async def all_state(self) -> dict[tuple[str, str], dict[str, bytes]]:
        """Every object's and workflow's state, by ``(service, key)``, raw bytes."""
        out: dict[tuple[str, str], dict[str, bytes]] = {}
        for item in await self.backend.scan("obj/", keys.STATE):
            service, _, key = item.pk.removeprefix("obj/").partition("/")
            state, _version = await self.engine.store.state(service, key)
            if state:
                out[(service, key)] = state
        return out

    async def status(self, invocation_id: str) -> str:
        """``pending``, ``scheduled``, ``ready``, ``running``, ``suspended``,
        ``backing-off``, ``paused`` or ``completed``."""
        found = await self.engine.store.invocation(invocation_id)
        if found is None:
            raise KeyError(f"no invocation {invocation_id}")
        return str(found.inv.status.value)

    async def describe(self, invocation_id: str) -> dict[str, Any]:
        """The admin API's description of an invocation."""
        return await self.engine.describe_invocation(invocation_id)

    async def journal(self, invocation_id: str) -> list[JournalEntry]:
        """The invocation's journal, entry by entry."""
        loaded = load_partition(await self.backend.query(keys.inv(invocation_id)))
        if loaded is None:
            raise KeyError(f"no invocation {invocation_id}")
        out = []
        for index, (ty, payload) in enumerate(loaded.entries):
            try:
                message: Any = parse(ty, payload)
            except Exception:  # an entry type this SDK does not know: keep the bytes
                message = None
            name = getattr(message, "name", None) or None
            kind = describe(ty).split("(")[0]
            out.append(JournalEntry(index, kind, name, message, (ty, payload)))
        return out

    async def invocations(self) -> list[dict[str, Any]]:
        """Every invocation the store holds, newest first (admin API rows)."""
        return await self.engine.list_invocations(include_completed=True, limit=10_000)


def _decode_outcome(outcome: Outcome, type_: Any) -> Any:
    if not outcome.ok:
        raise InvocationFailed(outcome.invocation_id, outcome.failure_code, outcome.failure_message)
    if not outcome.value:
        return None
    ct = (outcome.content_type or "application/json").split(";")[0].strip().lower()
    if type_ is not None:
        return msgspec.json.decode(outcome.value, type=type_)
    if ct.endswith("json"):
        return msgspec.json.decode(outcome.value)
    return outcome.value


def _maybe_json(value: bytes) -> Any:
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return value


def _human_ms(ms: int) -> str:
    ms = max(0, ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


@contextlib.asynccontextmanager
async def harness(
    backend: BackendKind | Backend = "memory",
    *apps: Any,
    start_ms: int | None = None,
    config: EngineConfig | None = None,
) -> Any:
    """``async with harness("memory", app) as h``: a started :class:`Harness` serving ``apps``."""
    h = Harness(backend, start_ms=start_ms, config=config)
    await h.start()
    try:
        for app in apps:
            await h.mount(app)
        yield h
    finally:
        await h.close()
