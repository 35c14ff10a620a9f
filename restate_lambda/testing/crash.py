"""``crash_everywhere``: replay a scenario with the handler cut off after every journal entry.

How it works:

1. The scenario runs twice without any crash. If the two runs already differ (result, state,
   journals or observed side effects), the handler is not deterministic and that is reported.
2. The clean run counts the journal entries the handlers write (commands and ``ctx.run``
   results), over all attempts of all invocations, in the order the runtime receives them:
   entries ``0 .. K-1``.
3. For every ``N`` in ``0 .. K-1`` the scenario runs again, on a fresh store, and the attempt
   that writes entry ``N`` is cut off just before it: the deployment's response keeps the
   ``N`` entries before it (the runtime journals them, as it would have before a real crash)
   and then ends with an error, as if the handler's process had died. The runtime then
   restarts (:meth:`Harness.restart`: a fresh engine on the same store) and resumes the
   invocation from its journal at the same instant of the manual clock, so nothing that
   depends on time moves.
4. Each run's result, state, journals and (with ``observe``) side effects are compared with
   the clean run's; every difference is a :class:`Divergence`.

The cut is made by wrapping the in-process app (no change to the runtime), which also makes
every invocation's random seed a function of its invocation id, and the harness gives every
``send``/``call`` without an idempotency key a numbered one, so that invocation ids, and with
them ``ctx.rand`` and child invocation ids, are the same in every run.

What it finds: a handler that takes a decision outside ``ctx.run`` from something that
changes between attempts (``random()``, ``time.time()``, ``uuid4()``, a global counter, an
external read) writes a different journal or state after a crash; a side effect outside
``ctx.run`` is repeated by the replay (visible through ``observe``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from invoker import keys
from invoker.config import EngineConfig
from invoker.journal import load_partition
from restate_lambda.protocol.framing import decode_all, encode_raw
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import describe, parse, pb
from restate_lambda.testing.in_process import BackendKind, Harness
from restate_lambda.testing.sdk_time import default_start_ms

Scenario = Callable[[Harness], Awaitable[Any]]
#: The failure message of an attempt cut off on purpose.
CUT_MESSAGE = "crash_everywhere: attempt cut off"


@dataclass(frozen=True, slots=True)
class Divergence:
    """A run that ended differently from the clean run."""

    #: entries kept before the cut (``None``: two runs without any crash differ)
    cut_after: int | None
    #: the entry the attempt was cut off before, e.g. ``Shop/buy: RUN_COMMAND 'charge'``
    where: str
    #: what differs, one line each
    differences: list[str]

    def __str__(self) -> str:
        head = (
            "two runs without any crash differ (the handler is not deterministic)"
            if self.cut_after is None
            else f"crash after entry {self.cut_after}, before {self.where}"
        )
        return head + "".join(f"\n    {line}" for line in self.differences)


@dataclass(slots=True)
class CrashReport:
    """What :func:`crash_everywhere` found."""

    #: journal entries the handlers wrote in the clean run (one crashed run each)
    entries: int
    #: runs made, the clean ones included
    runs: int
    divergences: list[Divergence] = field(default_factory=list)
    #: the entries of the clean run, in order: ``Service/handler: TYPE 'name'``
    entry_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every run matched the clean run."""
        return not self.divergences

    def __str__(self) -> str:
        if self.ok:
            return f"crash_everywhere: {self.runs} runs, {self.entries} crash points, no divergence"
        lines = [
            f"crash_everywhere: {len(self.divergences)} of {self.runs} runs diverged "
            f"({self.entries} crash points):"
        ]
        lines.extend(f"  {d}" for d in self.divergences)
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` with the report unless every run matched."""
        if not self.ok:
            raise AssertionError(str(self))


def _is_entry(ty: int) -> bool:
    """Messages from the deployment that become journal entries."""
    return 0x0400 <= ty <= 0x7FFF or ty >= 0xFC00 or ty == T.PROPOSE_RUN_COMPLETION


def _entry_label(ty: int, payload: bytes) -> str:
    label = describe(ty).split("(")[0]
    try:
        name = getattr(parse(ty, payload), "name", "")
    except Exception:
        name = ""
    return f"{label} {name!r}" if name else label


class _Plan:
    """Counts the handlers' journal entries across a run and cuts once at ``cut_at``."""

    def __init__(self, cut_at: int | None) -> None:
        self.cut_at = cut_at
        self.count = 0
        self.cut_done = False
        self.labels: list[str] = []
        self.where = ""

    def filter(self, target: str, body: bytes) -> bytes:
        frames = decode_all(body)
        out: list[bytes] = []
        for frame in frames:
            if _is_entry(frame.type):
                if not self.cut_done and self.cut_at == self.count:
                    self.cut_done = True
                    self.where = f"{target}: {_entry_label(frame.type, frame.payload)}"
                    error = pb().ErrorMessage(
                        code=503,
                        message=f"{CUT_MESSAGE} after {self.count} entries",
                        next_retry_delay=0,
                    )
                    out.append(encode_raw(int(T.ERROR), error.SerializeToString()))
                    return b"".join(out)
                self.labels.append(f"{target}: {_entry_label(frame.type, frame.payload)}")
                self.count += 1
            out.append(frame.to_bytes())
        return b"".join(out)


def _seeded_start(body: bytes) -> bytes:
    """Replace the random seed of the StartMessage by one derived from the invocation id."""
    frames = decode_all(body)
    if not frames or frames[0].type != T.START:
        return body
    start = pb().StartMessage()
    start.ParseFromString(frames[0].payload)
    digest = hashlib.blake2b(start.debug_id.encode() or bytes(start.id), digest_size=8).digest()
    start.random_seed = int.from_bytes(digest, "big") >> 1
    first = encode_raw(int(T.START), start.SerializeToString(), frames[0].flags)
    return first + b"".join(f.to_bytes() for f in frames[1:])


class _CuttingApp:
    """An ASGI app around the user's: deterministic seeds, and the cut of :class:`_Plan`."""

    def __init__(self, app: Any, plan: _Plan, on_cut: Callable[[], None]) -> None:
        self.app = app
        self.plan = plan
        self.on_cut = on_cut

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope.get("type") != "http" or not path.startswith("/invoke/"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = _seeded_start(b"".join(chunks))
        # No checkpoint channel: every entry then comes back in a response, where it can be cut.
        extensions = {
            k: v for k, v in (scope.get("extensions") or {}).items() if k != "restate.checkpoint"
        }
        scope = {**scope, "extensions": extensions}
        sent = False

        async def inner_receive() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def inner_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(bytes(message.get("body", b"")))

        await self.app(scope, inner_receive, inner_send)
        reply = b"".join(parts)
        if start.get("status") == 200:
            target = "/".join(path.split("/")[2:4])
            was_cut = self.plan.cut_done
            reply = self.plan.filter(target, reply)
            if self.plan.cut_done and not was_cut:
                self.on_cut()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(reply)).encode()))
        status = start.get("status", 500)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply, "more_body": False})


@dataclass(slots=True)
class _Snapshot:
    result: str
    state: dict[str, Any]
    invocations: dict[str, dict[str, Any]]
    observed: Any


async def _snapshot(h: Harness, result: str, observed: Any) -> _Snapshot:
    state = {
        f"{svc}/{key}": {name: _show(value) for name, value in sorted(values.items())}
        for (svc, key), values in sorted((await h.all_state()).items())
    }
    invocations: dict[str, dict[str, Any]] = {}
    for item in await h.backend.scan(keys.INV_PREFIX, keys.META):
        loaded = load_partition(await h.backend.query(item.pk))
        if loaded is None:
            continue
        inv = loaded.invocation
        commands = []
        notifications = []
        for ty, payload in loaded.entries:
            if 0x8000 <= ty < 0xFC00:
                notifications.append((ty, payload))
            else:
                commands.append((ty, payload))
        outcome: str | None = None
        if inv.result is not None:
            if inv.result.failure is not None:
                outcome = f"failed [{inv.result.failure.code}] {inv.result.failure.message}"
            else:
                outcome = f"returned {_show(inv.result.value or b'')}"
        invocations[inv.id] = {
            "target": f"{inv.service}/{inv.handler}"
            + (f" key {inv.key!r}" if inv.key is not None else ""),
            "status": inv.status.value,
            "outcome": outcome,
            "commands": commands,
            "notifications": sorted(notifications),
        }
    return _Snapshot(result, state, invocations, observed)


def _show(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:77] + "..."


def _compare(clean: _Snapshot, run: _Snapshot) -> list[str]:
    out: list[str] = []
    if clean.result != run.result:
        out.append(f"scenario result: {clean.result} != {run.result}")
    for name in sorted(set(clean.state) | set(run.state)):
        a, b = clean.state.get(name, {}), run.state.get(name, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"state {name} {k!r}: {a.get(k)} != {b.get(k)}")
    for inv_id in sorted(set(clean.invocations) | set(run.invocations)):
        a2, b2 = clean.invocations.get(inv_id), run.invocations.get(inv_id)
        if a2 is None or b2 is None:
            which = b2 if a2 is None else a2
            assert which is not None
            out.append(
                f"invocation {which['target']} ({inv_id}) only in the "
                + ("crashed" if a2 is None else "clean")
                + " run"
            )
            continue
        target = a2["target"]
        if a2["outcome"] != b2["outcome"] or a2["status"] != b2["status"]:
            out.append(
                f"{target}: {a2['status']} {a2['outcome'] or ''} != "
                f"{b2['status']} {b2['outcome'] or ''}".rstrip()
            )
        out.extend(_journal_diff(target, a2["commands"], b2["commands"]))
        if a2["notifications"] != b2["notifications"]:
            out.append(f"{target}: the completions in the journal differ")
    if clean.observed != run.observed:
        out.append(f"observed side effects: {clean.observed!r} != {run.observed!r}")
    return out


def _journal_diff(target: str, a: list[tuple[int, bytes]], b: list[tuple[int, bytes]]) -> list[str]:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return [
                f"{target}: command #{i} differs: {_entry_label(*x)} != {_entry_label(*y)}"
                + (" (same type, different content)" if x[0] == y[0] else "")
            ]
    if len(a) != len(b):
        return [f"{target}: {len(a)} commands in the clean run, {len(b)} after the crash"]
    return []


async def crash_everywhere(
    app: Any | Sequence[Any],
    scenario: Scenario,
    *,
    backend: BackendKind = "memory",
    observe: Callable[[], Any] | None = None,
    reset: Callable[[], None] | None = None,
    config: EngineConfig | None = None,
    max_crash_points: int = 500,
) -> CrashReport:
    """Run ``scenario`` cleanly, then once per journal entry with a crash just before it, and
    report every run that ends differently (see the module docstring for how).

    Args:
        app: the ASGI app (or apps) of your services, ``restate_lambda`` or ``restate``.
        scenario: ``async def scenario(h: Harness)``: drives the invocations with ``h.call``,
            ``h.send``, ``h.advance``, ``h.resolve_awakeable``...; what it returns is compared.
        backend: ``"memory"`` or ``"sqlite"``.
        observe: returns a snapshot of your external side effects (e.g. a fake mailbox's
            messages), compared between runs: a duplicate shows missing idempotency.
        reset: clears those side effects; called before every run.
        max_crash_points: refuse scenarios with more entries than this.

    Returns:
        the :class:`CrashReport`; ``report.assert_ok()`` fails a test with the details.
    """
    apps = list(app) if isinstance(app, list | tuple) else [app]
    start_ms = default_start_ms()
    quiet = _QuietCuts()
    logging.getLogger("restate_lambda.settle").addFilter(quiet)
    try:
        return await _crash_everywhere(
            apps, scenario, backend, observe, reset, config, max_crash_points, start_ms
        )
    finally:
        logging.getLogger("restate_lambda.settle").removeFilter(quiet)


class _QuietCuts(logging.Filter):
    """Drops the runtime's warnings about the attempts we cut off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return CUT_MESSAGE not in record.getMessage()


async def _crash_everywhere(
    apps: list[Any],
    scenario: Scenario,
    backend: BackendKind,
    observe: Callable[[], Any] | None,
    reset: Callable[[], None] | None,
    config: EngineConfig | None,
    max_crash_points: int,
    start_ms: int,
) -> CrashReport:

    async def run(cut_at: int | None) -> tuple[_Snapshot, _Plan]:
        if reset is not None:
            reset()
        plan = _Plan(cut_at)
        h = Harness(backend, start_ms=start_ms, config=config)
        restart_due = False

        def on_cut() -> None:
            nonlocal restart_due
            restart_due = True

        async def before_round() -> None:
            nonlocal restart_due
            if restart_due:
                restart_due = False
                while h.engine.pending():
                    await asyncio.wait(h.engine.pending(), timeout=5)
                await h.restart()

        counter = iter(range(1_000_000))
        h._auto_idempotency = lambda service, handler: f"crash-everywhere-{next(counter)}"
        h._before_round = before_round
        await h.start()
        try:
            for i, a in enumerate(apps):
                await h.mount(_CuttingApp(a, plan, on_cut), name=f"app{i + 1}")
            try:
                result = repr(await scenario(h))
            except Exception as exc:
                result = f"raised {type(exc).__name__}: {exc}"
            snap = await _snapshot(h, result, observe() if observe is not None else None)
        finally:
            await h.close()
        return snap, plan

    clean, plan = await run(None)
    report = CrashReport(entries=plan.count, runs=1, entry_names=list(plan.labels))
    again, _ = await run(None)
    report.runs += 1
    differences = _compare(clean, again)
    if differences:
        report.divergences.append(Divergence(None, "", differences))
        return report
    if plan.count > max_crash_points:
        raise ValueError(
            f"the scenario writes {plan.count} journal entries, over max_crash_points="
            f"{max_crash_points}"
        )
    for n in range(plan.count):
        snap, cut_plan = await run(n)
        report.runs += 1
        differences = _compare(clean, snap)
        if differences:
            where = cut_plan.where or report.entry_names[n]
            report.divergences.append(Divergence(n, where, differences))
    return report


__all__ = ["CrashReport", "Divergence", "crash_everywhere"]
