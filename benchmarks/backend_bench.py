"""Micro benchmark of the storage backends: ops/s of single-put batches and point reads.

Runs each backend through the same workloads and prints one line per (backend, workload):

* ``put seq``   one task, one create-if-absent ``Put`` per ``write()``;
* ``put x16``   16 concurrent tasks doing the same (exercises SQLite's group commit);
* ``cas x16``   16 tasks, each CAS-updating its own item (the engine's usual write);
* ``get seq`` / ``get x16``  point reads of existing items.

Usage: ``python benchmarks/backend_bench.py [--ops 5000] [--backends memory,sqlite]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.api import Backend, Put
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend


async def _timed(n: int, tasks: int, op: Callable[[int, int], Awaitable[object]]) -> float:
    """Run ``n`` calls of ``op(task, i)`` split over ``tasks`` tasks; return ops/s."""
    per_task = n // tasks

    async def worker(t: int) -> None:
        for i in range(per_task):
            await op(t, i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


async def bench(name: str, backend: Backend, n: int) -> None:
    """Print the ops/s of every workload against ``backend``."""

    async def put_seq(t: int, i: int) -> None:
        await backend.write([Put("seq", f"{t}-{i:08d}", b"x" * 100)])

    async def put_conc(t: int, i: int) -> None:
        await backend.write([Put(f"conc{t}", f"{i:08d}", b"x" * 100)])

    async def cas(t: int, i: int) -> None:
        await backend.write([Put("cas", f"{t}", b"y" * 100, expect=i + 1)])

    async def get(t: int, i: int) -> None:
        await backend.get("seq", f"0-{i:08d}")

    results = {
        "put seq": await _timed(n, 1, put_seq),
        "put x16": await _timed(n, 16, put_conc),
    }
    await backend.write([Put("cas", f"{t}", b"") for t in range(16)])
    results["cas x16"] = await _timed(n, 16, cas)
    results["get seq"] = await _timed(n, 1, get)
    results["get x16"] = await _timed(n, 16, get)
    extra = ""
    if isinstance(backend, SqliteBackend):
        s = backend.stats
        extra = f"   ({s.batches} batches in {s.commits} commits)"
    print(f"{name:8} " + "  ".join(f"{k} {v:9,.0f}/s" for k, v in results.items()) + extra)


async def main() -> None:
    """Parse arguments and run the selected backends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=5000, help="operations per workload")
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument("--readers", type=int, default=0, help="SQLite reader threads (0: inline)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends.split(","):
            backend: Backend
            if kind == "memory":
                backend = MemoryBackend()
            elif kind == "sqlite":
                backend = SqliteBackend(Path(tmp) / "bench.db", readers=args.readers)
            else:
                raise SystemExit(f"unknown backend {kind!r}")
            try:
                await bench(kind, backend, args.ops)
            finally:
                await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
