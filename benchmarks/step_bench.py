"""Per-step overhead of a durable ``ctx.run`` step, in process, on SQLite.

One handler, ``Steps.run(n)``, runs ``n`` trivial steps (``x = await ctx.run_typed(name, incr,
v=x)`` with ``incr`` returning ``v + 1``). ``--body sync`` makes ``incr`` a plain function, which
both SDKs run in the event loop's default thread pool (a hop to a thread and back per step);
``--body async`` an ``async def``, awaited in the loop.

The service is served in process by :class:`restate_lambda.testing.Harness` (the engine, the
store and the app in this event loop; the app mounted via ASGI) on
:class:`backends.sqlite.SqliteBackend` (a fresh temporary file per repetition, the default
inline writer, ``synchronous=NORMAL``), and invoked through ``Engine.call``, the path an ingress
call takes (the invocation runs inline, no sweeper round in between). By default the engine is
the store's only user, as ``restate-lambda dev`` is on its data directory (``--engine sole``):
an attempt then reads its pending notifications only when the engine may have written one (see
:mod:`invoker.notify_watch`); ``--engine shared`` reads them at every step, as engines sharing a
store must. The event loop is uvloop, as ``restate-lambda dev`` runs (``--loop asyncio``: the
standard library's, as a plain ``asyncio.run`` test does; a plain-function step's hop to a worker
thread and back costs about twice the CPU there).

For each SDK and repetition the script makes ``--calls`` sequential calls with ``n=1`` and as
many with ``n=21`` (in alternating order), and takes the mean per call of each block. The
per-step overhead of the repetition is ``(t21 - t1) / 20``: everything an invocation costs once
(submission, the attempt's start, the outcome) cancels out. Reported: the median and p90 over
the repetitions, of wall time and of this process's CPU time (``time.process_time``: every
thread; less sensitive to other load on the machine than wall time).

The SDKs:

* ``ours``: ``restate_lambda.app``. The harness's transport offers the in-process checkpoint
  channel (see :mod:`restate_lambda.checkpoint`), so the whole handler runs in one request and
  each step is made durable before the handler continues.
* ``sdk``: the official ``restate`` SDK (``restate.app``). The in-process ASGI transport is
  request-response (HTTP/1.1 semantics, no bidi stream), so the SDK suspends after every run:
  ``n`` steps take ``n + 1`` requests, each replaying the journal so far.

Storage writes are counted by wrapping the backend: ``write()`` calls (each one an atomic,
conditional batch: one SQLite transaction, one DynamoDB ``TransactWriteItems``) and their
operations, plus point reads (``get``) and range reads (``query``), per step as
``(count21 - count1) / 20``. The floor line is one conditional ``write()`` of one item on its
own (sequential, same file settings): the storage part of a step.

The load average (``os.getloadavg``) is printed at the start and at the end: on a busy machine
wall times grow with the load, CPU times much less.

Usage::

    .venv/bin/python benchmarks/step_bench.py                  # about 5 minutes
    .venv/bin/python benchmarks/step_bench.py --calls 30 --reps 3   # smoke run
    .venv/bin/python benchmarks/step_bench.py --sdk ours --backend sqlite,memory
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.api import Backend, Delete, Item, Put, WriteOp
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend

SHORT, LONG = 1, 21


class CountingBackend:
    """A :class:`~backends.api.Backend` that counts the calls it forwards to ``inner``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.max_value_bytes = inner.max_value_bytes
        self.max_batch_ops = inner.max_batch_ops
        self.supports_expiry = inner.supports_expiry
        self.counts: Counter[str] = Counter()

    async def get(self, pk: str, sk: str) -> Item | None:
        self.counts["get"] += 1
        return await self.inner.get(pk, sk)

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        self.counts["query"] += 1
        return await self.inner.query(pk, prefix, after=after, limit=limit, reverse=reverse)

    async def write(self, ops: Sequence[WriteOp]) -> None:
        self.counts["write"] += 1
        self.counts["ops"] += len(ops)
        for op in ops:
            kind = "put" if isinstance(op, Put) else "delete" if isinstance(op, Delete) else "check"
            self.counts[kind] += 1
        await self.inner.write(ops)

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        self.counts["due"] += 1
        return await self.inner.due(until_ms, limit)

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        self.counts["delete_items"] += 1
        await self.inner.delete_items(keys)

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        self.counts["scan"] += 1
        return await self.inner.scan(pk_prefix, sk, limit=limit)

    async def close(self) -> None:
        await self.inner.close()


def _incr_sync(v: int) -> int:
    return v + 1


async def _incr_async(v: int) -> int:
    return v + 1


def build_app(sdk: str, body: str) -> Any:
    """The ``Steps`` service written with ``restate_lambda`` (``ours``) or ``restate``, its
    steps' bodies plain functions (``sync``) or coroutines (``async``)."""
    if sdk == "ours":
        import restate_lambda as mod
    else:
        import restate as mod  # type: ignore[no-redef]

    steps = mod.Service("Steps")
    incr: Any = _incr_sync if body == "sync" else _incr_async

    @steps.handler()
    async def run(ctx: Any, n: int) -> int:
        x = 0
        for i in range(n):
            x = await ctx.run_typed(f"step-{i}", incr, v=x)
        return x

    return mod.app([steps])


def make_backend(kind: str, directory: Path) -> Backend:
    """A fresh store of ``kind`` (``sqlite``: a new file in ``directory``)."""
    if kind == "sqlite":
        return SqliteBackend(directory / "steps.db")
    return MemoryBackend()


@dataclass
class Block:
    """Means per call of one block of sequential calls."""

    wall_ms: float
    cpu_ms: float
    counts: dict[str, float]


async def run_block(harness: Any, backend: CountingBackend, n: int, calls: int) -> Block:
    """``calls`` sequential ``Steps.run(n)`` calls through ``Engine.call``."""
    from invoker.api import InvokeRequest, Target

    body = str(n).encode()
    headers = [("content-type", "application/json")]
    before = Counter(backend.counts)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        request = InvokeRequest(
            target=Target("Steps", "run", None),
            body=body,
            headers=headers,
            content_type="application/json",
        )
        outcome = await harness.engine.call(request)
        if not outcome.ok or outcome.value != body:
            raise RuntimeError(f"Steps.run({n}) answered {outcome}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = {k: (backend.counts[k] - before[k]) / calls for k in backend.counts}
    return Block(wall * 1e3 / calls, cpu * 1e3 / calls, counts)


async def one_rep(
    sdk: str, kind: str, body: str, calls: int, long_first: bool, sole: bool = True
) -> tuple[Block, Block]:
    """One repetition on a fresh store: warm-up, then the n=1 and n=21 blocks."""
    from restate_lambda.testing import Harness

    with tempfile.TemporaryDirectory(prefix="step-bench-") as tmp:
        backend = CountingBackend(make_backend(kind, Path(tmp)))
        async with Harness(backend, sole=sole) as harness:
            await harness.mount(build_app(sdk, body))
            for n in (SHORT, LONG):
                await run_block(harness, backend, n, max(5, calls // 10))
            order = (LONG, SHORT) if long_first else (SHORT, LONG)
            blocks = {n: await run_block(harness, backend, n, calls) for n in order}
    return blocks[SHORT], blocks[LONG]


async def write_floor(ops: int) -> float:
    """Median ms of one conditional one-item ``write()`` on SQLite (sequential CAS updates)."""
    with tempfile.TemporaryDirectory(prefix="step-bench-") as tmp:
        backend = SqliteBackend(Path(tmp) / "floor.db")
        try:
            await backend.write([Put("inv/x", "j/0", b"x" * 100)])
            times = []
            for version in range(1, ops + 1):
                start = time.perf_counter()
                await backend.write([Put("inv/x", "j/0", b"y" * 100, expect=version)])
                times.append(time.perf_counter() - start)
            return statistics.median(times) * 1e3
        finally:
            await backend.close()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def load() -> str:
    """The load average, as ``uptime`` shows it, and the CPU count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


async def main_async(args: argparse.Namespace) -> None:
    """Run every (sdk, backend) pair ``--reps`` times and print the table."""
    import logging

    logging.getLogger("restate").setLevel(logging.ERROR)
    print(f"step_bench: start, {load()}")
    print(
        f"Steps.run(n), n={SHORT} and n={LONG}, {args.calls} sequential calls per block, "
        f"{args.reps} repetitions; per step = (t{LONG} - t{SHORT}) / {LONG - SHORT}; "
        f"engine: {args.engine}; loop: {args.loop}"
    )
    pairs = [
        (s, b, body)
        for b in args.backend.split(",")
        for body in args.body.split(",")
        for s in args.sdk.split(",")
    ]
    results: dict[tuple[str, str, str], list[tuple[Block, Block]]] = {p: [] for p in pairs}
    for rep in range(args.reps):
        # alternate the order of the pairs and of the blocks from repetition to repetition
        for pair in pairs if rep % 2 == 0 else reversed(pairs):
            sdk, kind, body = pair
            results[pair].append(
                await one_rep(
                    sdk, kind, body, args.calls, long_first=rep % 2 == 1, sole=args.engine == "sole"
                )
            )
    floor = await write_floor(2000)

    cols = ("wall p50", "wall p90", "CPU p50", "CPU p90", "t1 wall", "t21 wall")
    print()
    print("per durable step, ms (t1 / t21: median ms per call of the two blocks)")
    head = f"{'sdk':5} {'backend':8} {'body':6}"
    print(head + "".join(f"{c:>10}" for c in cols) + "  storage per step")
    for (sdk, kind, body), reps in results.items():
        wall = [(b.wall_ms - a.wall_ms) / (LONG - SHORT) for a, b in reps]
        cpu = [(b.cpu_ms - a.cpu_ms) / (LONG - SHORT) for a, b in reps]
        t1 = statistics.median(a.wall_ms for a, _ in reps)
        t21 = statistics.median(b.wall_ms for _, b in reps)
        a0, b0 = reps[-1]
        per = {k: (b0.counts.get(k, 0) - a0.counts.get(k, 0)) / (LONG - SHORT) for k in b0.counts}
        stored = (
            f"{per.get('write', 0):.2f} write() ({per.get('ops', 0):.2f} ops: "
            f"{per.get('put', 0):.2f} put, {per.get('check', 0):.2f} check, "
            f"{per.get('delete', 0):.2f} delete), {per.get('get', 0):.2f} get, "
            f"{per.get('query', 0):.2f} query"
        )
        nums = (
            statistics.median(wall),
            pct(wall, 0.9),
            statistics.median(cpu),
            pct(cpu, 0.9),
            t1,
            t21,
        )
        row = f"{sdk:5} {kind:8} {body:6}"
        print(row + "".join(f"{v:>10.3f}" for v in nums) + f"  {stored}")
        print(
            f"{'':21} per call n=1: {a0.counts.get('write', 0):.1f} write(), "
            f"{a0.counts.get('get', 0):.1f} get, {a0.counts.get('query', 0):.1f} query"
        )
    print()
    print(f"floor: one conditional one-item write() on SQLite alone: {floor:.3f} ms (median)")
    print(f"step_bench: end, {load()}")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per block")
    parser.add_argument("--reps", type=int, default=11, help="repetitions")
    parser.add_argument("--sdk", default="ours,sdk", help="ours (restate_lambda), sdk (restate)")
    parser.add_argument("--backend", default="sqlite", help="sqlite, memory (comma-separated)")
    parser.add_argument("--body", default="sync,async", help="step bodies: sync, async")
    parser.add_argument(
        "--engine",
        choices=("sole", "shared"),
        default="sole",
        help="sole: the engine is the store's only user, as restate-lambda dev is (default); "
        "shared: as engines sharing a store (an attempt reads its notifications at every step)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop: uvloop, as restate-lambda dev runs (default), or asyncio's own",
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
