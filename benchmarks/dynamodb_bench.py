"""Latency and throughput of the DynamoDB backend (on DynamoDB Local by default).

Prints, per workload, the sequential latency (p50 / p95 / p99 in ms, one task) and the throughput of
16 concurrent tasks (ops/s):

* ``put``      a create-if-absent ``Put`` (one ``PutItem`` with a condition), 100-byte value;
* ``cas``      a compare-and-set ``Put`` of the task's own item (``PutItem`` + ``v = :n``);
* ``upsert``   an unconditional ``Put`` (``UpdateItem``);
* ``txn2``     a fenced two-op batch: ``Check`` + ``Put`` (``TransactWriteItems``);
* ``get``      a point read (consistent ``GetItem``);
* ``query10``  a 10-item partition query (consistent ``Query``);
* ``due10``    ``due(limit=10)`` over 4 shards + ``BatchGetItem``;
* ``put1MB``   (``--s3``) a 1 MB value offloaded to S3 (moto), then the item.

Usage::

    python benchmarks/dynamodb_bench.py [--ops 1000] [--endpoint http://127.0.0.1:8000] [--s3]

Without ``--endpoint`` (or ``DYNAMODB_ENDPOINT``) it starts DynamoDB Local itself
(``scripts/dynamodb_local.sh``). Numbers from DynamoDB Local say nothing about AWS latency
(single-digit ms within a region); they show this code's overhead and concurrency behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.api import Check, Put
from backends.dynamodb import DynamoDbBackend

Op = Callable[[int, int], Awaitable[object]]


async def latency(n: int, op: Op) -> tuple[float, float, float]:
    """p50, p95, p99 in ms of ``n`` sequential calls of ``op(0, i)``."""
    samples: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        await op(0, i)
        samples.append((time.perf_counter() - start) * 1000)
    q = statistics.quantiles(samples, n=100)
    return q[49], q[94], q[98]


async def throughput(n: int, tasks: int, op: Op) -> float:
    """ops/s of ``n`` calls of ``op(task, i)`` split over ``tasks`` concurrent tasks."""
    per_task = n // tasks

    async def worker(t: int) -> None:
        for i in range(per_task):
            await op(t, i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


async def bench(backend: DynamoDbBackend, n: int, tasks: int, s3: bool) -> None:
    """Run every workload twice (sequential, then concurrent) on fresh keys and print a table."""
    value = b"x" * 100
    round_ = [0]  # keys differ between the sequential and the concurrent run

    def tag(t: int) -> str:
        return f"r{round_[0]}t{t}"

    async def put(t: int, i: int) -> None:
        await backend.write([Put(f"put/{tag(t)}", f"{i:08d}", value)])

    async def cas(t: int, i: int) -> None:
        await backend.write([Put(f"cas/{tag(t)}", "item", value, expect=i + 1)])

    async def upsert(t: int, i: int) -> None:
        await backend.write([Put(f"ups/{tag(t)}", "item", value, expect=None)])

    async def txn2(t: int, i: int) -> None:
        await backend.write(
            [Check(f"cas/{tag(t)}", "item", n + 1), Put(f"txn/{tag(t)}", f"{i:08d}", value)]
        )

    async def get(t: int, i: int) -> None:
        await backend.get(f"put/{tag(t)}", f"{i % 50:08d}")

    async def query10(t: int, i: int) -> None:
        await backend.query(f"put/{tag(t)}", limit=10)

    async def due10(t: int, i: int) -> None:
        await backend.due(1_000, 10)

    big = os.urandom(1024 * 1024)

    async def put1mb(t: int, i: int) -> None:
        await backend.write([Put(f"big/{tag(t)}", f"{i:08d}", big[:-8] + i.to_bytes(8, "big"))])

    await backend.write([Put("duepart", f"{k:04d}", b"d", due_ms=k) for k in range(50)])
    workloads: list[tuple[str, Op, int]] = [
        ("put", put, n),
        ("cas", cas, n),
        ("upsert", upsert, n),
        ("txn2", txn2, n),
        ("get", get, n),
        ("query10", query10, n),
        ("due10", due10, max(n // 5, 50)),
    ]
    if s3:
        workloads.append(("put1MB", put1mb, max(n // 20, 20)))
    print(f"{'workload':10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {f'x{tasks} ops/s':>12}")
    for name, op, count in workloads:
        round_[0] = 0
        if name == "cas":
            await backend.write([Put(f"cas/{tag(0)}", "item", b"")])
        lat = await latency(count, op)
        round_[0] = 1
        if name == "cas":
            await backend.write([Put(f"cas/{tag(t)}", "item", b"") for t in range(tasks)])
        if name == "txn2":
            n_cas = count // tasks  # the concurrent cas run left each item at version n_cas + 1
            fence = n_cas + 1

            async def txn2c(t: int, i: int, fence: int = fence) -> None:
                await backend.write(
                    [Check(f"cas/{tag(t)}", "item", fence), Put(f"txn/{tag(t)}", f"{i:08d}", value)]
                )

            ops = await throughput(count, tasks, txn2c)
        else:
            ops = await throughput(count, tasks, op)
        print(f"{name:10} {lat[0]:8.2f} {lat[1]:8.2f} {lat[2]:8.2f} {ops:12,.0f}")


async def main() -> None:
    """Parse arguments, start DynamoDB Local (and moto) if needed, run the workloads."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="operations per workload")
    parser.add_argument("--tasks", type=int, default=16, help="concurrent tasks")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"))
    parser.add_argument("--s3", action="store_true", help="also offload 1 MB values to S3")
    args = parser.parse_args()
    if args.endpoint:
        os.environ["DYNAMODB_ENDPOINT"] = args.endpoint
    from tests.support.aws import SERVERS, dynamodb_backend

    try:
        async with dynamodb_backend(bucket=args.s3) as backend:
            print(f"DynamoDB at {SERVERS.dynamodb()}, table {backend.table}")
            await bench(backend, args.ops, args.tasks, args.s3)
    finally:
        SERVERS.stop()


if __name__ == "__main__":
    asyncio.run(main())
