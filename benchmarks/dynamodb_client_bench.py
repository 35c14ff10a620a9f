"""boto3 on a thread pool against aioboto3, for the DynamoDB backend's calls, on DynamoDB Local.

The question (issue 11): should :mod:`backends.dynamodb` keep boto3 with a thread pool (its design:
every blocking call runs on a dedicated pool via ``run_in_executor``) or switch to aioboto3
(aiobotocore over aiohttp, native asyncio)? Both sides run in one process, one run, against the
same DynamoDB Local, with the same request dictionaries and the same botocore version (aioboto3
pins its botocore, and boto3 comes from that pin), and the same connection pool size:

* ``boto3``: one boto3 client (``max_pool_connections = tasks + 8``, TCP keep-alive, standard
  retries: what :func:`backends.dynamodb.make_clients` builds) and a ``ThreadPoolExecutor`` of
  ``tasks`` threads, each call through ``loop.run_in_executor``;
* ``aioboto3``: one aioboto3 client with the same ``AioConfig``, each call awaited directly.

Workloads (the backend's hot calls): ``put`` a create-if-absent ``PutItem`` (100-byte value),
``get`` a consistent ``GetItem``, ``txn2`` a two-item ``TransactWriteItems`` (``ConditionCheck`` +
``Put``), ``query10`` a consistent 10-item ``Query``. For each: the sequential latency (p50, one
task) and the client-side CPU per operation (``time.process_time`` of this process, all threads;
DynamoDB Local runs in its own process and is not counted), then the throughput and CPU per
operation of ``--tasks`` (default 64) concurrent tasks. Rounds alternate which side goes first;
the table shows medians over rounds and the ratio aioboto3 / boto3.

Usage (aioboto3 pins botocore, so it lives in a scratch venv, not in the project's)::

    python3 -m venv /tmp/aiobench && /tmp/aiobench/bin/pip install "aioboto3==15.5.0" httpx pytest
    PYTHONPATH=. /tmp/aiobench/bin/python benchmarks/dynamodb_client_bench.py [--ops 2000]

Without ``--endpoint`` (or ``DYNAMODB_ENDPOINT``) it starts DynamoDB Local the way the tests do
(``tests.support.aws``: ``scripts/dynamodb_local.sh`` on a free port). DynamoDB Local shares the
machine's cores with the client, so throughput is bounded by it on a small machine; the CPU per
operation is the client's own cost, which is what Lambda bills.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
REGION = "us-east-1"


def _config_kwargs(pool: int) -> dict[str, Any]:
    """The client configuration of ``backends.dynamodb.make_clients``."""
    return {
        "max_pool_connections": pool,
        "tcp_keepalive": True,
        "connect_timeout": 3.0,
        "read_timeout": 10.0,
        "retries": {"mode": "standard", "total_max_attempts": 4},
    }


class Boto3Side:
    """boto3 client + thread pool, as the backend runs it."""

    name = "boto3"

    def __init__(self, endpoint: str, tasks: int) -> None:
        """Build the client and the pool (no I/O)."""
        import boto3
        from botocore.config import Config

        self.client = boto3.session.Session(region_name=REGION).client(
            "dynamodb", endpoint_url=endpoint, config=Config(**_config_kwargs(tasks + 8))
        )
        self.pool = ThreadPoolExecutor(max_workers=tasks, thread_name_prefix="ddb")

    async def __aenter__(self) -> Call:
        """The call function: ``await call(method, request)``."""
        loop = asyncio.get_running_loop()

        async def call(method: str, request: dict[str, Any]) -> Any:
            fn = functools.partial(getattr(self.client, method), **request)
            return await loop.run_in_executor(self.pool, fn)

        return call

    async def __aexit__(self, *exc: object) -> None:
        """Keep the client for the next round (closed by :meth:`close`)."""

    def close(self) -> None:
        """Stop the pool and close the client."""
        self.pool.shutdown(wait=True)
        self.client.close()


class AioSide:
    """One aioboto3 client, opened per round (it is bound to the running event loop)."""

    name = "aioboto3"

    def __init__(self, endpoint: str, tasks: int) -> None:
        """Remember the settings (no I/O)."""
        import aioboto3
        from aiobotocore.config import AioConfig

        self.session = aioboto3.Session(region_name=REGION)
        self.endpoint = endpoint
        self.config = AioConfig(**_config_kwargs(tasks + 8))
        self._cm: Any = None

    async def __aenter__(self) -> Call:
        """Open the client; the call function awaits it directly."""
        self._cm = self.session.client("dynamodb", endpoint_url=self.endpoint, config=self.config)
        client = await self._cm.__aenter__()

        async def call(method: str, request: dict[str, Any]) -> Any:
            return await getattr(client, method)(**request)

        return call

    async def __aexit__(self, *exc: object) -> None:
        """Close the client."""
        await self._cm.__aexit__(None, None, None)

    def close(self) -> None:
        """Nothing left to close."""


def workloads(table: str, tag: str) -> dict[str, Callable[[int, int], tuple[str, dict[str, Any]]]]:
    """Request builders: ``(task, i) -> (method, request)``; keys are unique per ``tag``."""
    value = {"B": b"x" * 100}

    def put(t: int, i: int) -> tuple[str, dict[str, Any]]:
        return "put_item", {
            "TableName": table,
            "Item": {
                "pk": {"S": f"put/{tag}/{t}"},
                "sk": {"S": f"{i:08d}"},
                "v": {"N": "1"},
                "b": value,
            },
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def get(t: int, i: int) -> tuple[str, dict[str, Any]]:
        return "get_item", {
            "TableName": table,
            "Key": {"pk": {"S": "seed"}, "sk": {"S": f"{i % 50:08d}"}},
            "ConsistentRead": True,
        }

    def txn2(t: int, i: int) -> tuple[str, dict[str, Any]]:
        return "transact_write_items", {
            "TransactItems": [
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": {"S": "seed"}, "sk": {"S": "fence"}},
                        "ConditionExpression": "v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "1"}},
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": f"txn/{tag}/{t}"},
                            "sk": {"S": f"{i:08d}"},
                            "v": {"N": "1"},
                            "b": value,
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        }

    def query10(t: int, i: int) -> tuple[str, dict[str, Any]]:
        return "query", {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "seed"}},
            "ConsistentRead": True,
            "Limit": 10,
        }

    return {"put": put, "get": get, "txn2": txn2, "query10": query10}  # fmt: skip


async def run_sequential(
    call: Call, build: Callable[[int, int], Any], n: int
) -> tuple[float, float]:
    """(p50 latency ms, CPU µs per op) of ``n`` sequential calls."""
    samples: list[float] = []
    cpu0 = time.process_time()
    for i in range(n):
        method, request = build(0, i)
        start = time.perf_counter()
        await call(method, request)
        samples.append((time.perf_counter() - start) * 1000)
    cpu = time.process_time() - cpu0
    return statistics.median(samples), cpu / n * 1e6


async def run_concurrent(
    call: Call, build: Callable[[int, int], Any], n: int, tasks: int
) -> tuple[float, float]:
    """(ops/s, CPU µs per op) of ``n`` calls over ``tasks`` concurrent tasks."""
    per_task = max(n // tasks, 1)

    async def worker(t: int) -> None:
        for i in range(per_task):
            method, request = build(t, i)
            await call(method, request)

    cpu0 = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    done = per_task * tasks
    return done / wall, cpu / done * 1e6


_COLD_START = {
    "boto3": (
        "import time; t = time.perf_counter(); import boto3, botocore.config; "
        "c = boto3.session.Session(region_name='us-east-1').client('dynamodb', "
        "endpoint_url='http://127.0.0.1:9'); print((time.perf_counter() - t) * 1000)"
    ),
    "aioboto3": (
        "import time, asyncio; t = time.perf_counter(); import aioboto3\n"
        "async def main():\n"
        "    async with aioboto3.Session(region_name='us-east-1').client('dynamodb', "
        "endpoint_url='http://127.0.0.1:9'):\n"
        "        print((time.perf_counter() - t) * 1000)\n"
        "asyncio.run(main())"
    ),
}


def cold_start_ms(side: str, runs: int = 5) -> float:
    """Median ms to import the library and create a DynamoDB client, in a fresh interpreter."""
    import subprocess

    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _COLD_START[side]], capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def seed(endpoint: str, table: str) -> None:
    """Create the table (the backend's layout) and the items ``get``/``query``/``txn2`` read."""
    import boto3

    from backends.dynamodb import table_spec

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    client.create_table(**table_spec(table))
    client.get_waiter("table_exists").wait(TableName=table)
    for i in range(50):
        client.put_item(
            TableName=table,
            Item={"pk": {"S": "seed"}, "sk": {"S": f"{i:08d}"}, "v": {"N": "1"},
                  "b": {"B": os.urandom(100)}},
        )  # fmt: skip
    client.put_item(
        TableName=table, Item={"pk": {"S": "seed"}, "sk": {"S": "fence"}, "v": {"N": "1"}}
    )
    client.close()


async def bench(endpoint: str, n: int, seq: int, tasks: int, rounds: int) -> int:
    """Run every round and print the table; return a process exit code."""
    table = f"clientbench-{uuid.uuid4().hex[:8]}"
    seed(endpoint, table)
    sides: list[Any] = [Boto3Side(endpoint, tasks), AioSide(endpoint, tasks)]
    names = list(workloads(table, "x"))
    # results[side][workload][metric] -> list over rounds
    results: dict[str, dict[str, dict[str, list[float]]]] = {
        s.name: {w: {"p50": [], "seq_cpu": [], "ops": [], "cpu": []} for w in names} for s in sides
    }
    for r in range(rounds + 1):  # round 0 warms up both sides and is not counted
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            async with side as call:
                seq_builds = workloads(table, f"{side.name}{r}s")
                con_builds = workloads(table, f"{side.name}{r}c")
                for w in names:
                    count = n if r else max(n // 10, tasks)
                    p50, seq_cpu = await run_sequential(call, seq_builds[w], seq if r else 20)
                    ops, cpu = await run_concurrent(call, con_builds[w], count, tasks)
                    if r:
                        m = results[side.name][w]
                        m["p50"].append(p50)
                        m["seq_cpu"].append(seq_cpu)
                        m["ops"].append(ops)
                        m["cpu"].append(cpu)
            print(f"round {r} {side.name} done", file=sys.stderr, flush=True)
    for side in sides:
        side.close()

    def med(side: str, w: str, metric: str) -> float:
        return statistics.median(results[side][w][metric])

    print(
        f"\n{n} ops x {rounds} rounds per workload and side, {tasks} concurrent tasks, "
        f"{seq} sequential ops for latency; medians over rounds"
    )
    header = (
        f"{'workload':9} {'side':9} {'seq p50 ms':>10} {'seq CPU µs/op':>14} "
        f"{f'x{tasks} ops/s':>11} {f'x{tasks} CPU µs/op':>16}"
    )
    print(header)
    print("-" * len(header))
    for w in names:
        for s in ("boto3", "aioboto3"):
            print(
                f"{w:9} {s:9} {med(s, w, 'p50'):10.2f} {med(s, w, 'seq_cpu'):14.0f} "
                f"{med(s, w, 'ops'):11,.0f} {med(s, w, 'cpu'):16.0f}"
            )
        ratio = {
            k: med("aioboto3", w, k) / med("boto3", w, k) for k in ("p50", "seq_cpu", "ops", "cpu")
        }
        print(
            f"{w:9} {'ratio':9} {ratio['p50']:10.2f} {ratio['seq_cpu']:14.2f} "
            f"{ratio['ops']:11.2f} {ratio['cpu']:16.2f}"
        )
    cold = {s: cold_start_ms(s) for s in ("boto3", "aioboto3")}  # 5 runs each, medians
    print(
        f"cold start (import + first DynamoDB client, fresh interpreter): boto3 "
        f"{cold['boto3']:.0f} ms, aioboto3 {cold['aioboto3']:.0f} ms, "
        f"ratio {cold['aioboto3'] / cold['boto3']:.2f}"
    )
    print("\nratio = aioboto3 / boto3 (below 1 is better for latency and CPU, above 1 for ops/s)")
    return 0


def main() -> int:
    """Parse arguments, start DynamoDB Local if needed, run the benchmark."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="concurrent ops per workload/round")
    parser.add_argument("--seq", type=int, default=200, help="sequential ops per workload/round")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent tasks")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per side")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"))
    args = parser.parse_args()
    try:
        import aioboto3
    except ImportError:
        print(
            "aioboto3 is not installed here; it pins botocore, so use a scratch venv:\n"
            '  python3 -m venv /tmp/aiobench && /tmp/aiobench/bin/pip install "aioboto3==15.5.0" '
            "httpx pytest\n  PYTHONPATH=. /tmp/aiobench/bin/python "
            "benchmarks/dynamodb_client_bench.py",
            file=sys.stderr,
        )
        return 2
    if args.endpoint:
        os.environ["DYNAMODB_ENDPOINT"] = args.endpoint
    from tests.support.aws import SERVERS, aws_test_env

    aws_test_env()
    try:
        endpoint = SERVERS.dynamodb()
        import aiobotocore
        import botocore

        print(
            f"DynamoDB Local at {endpoint}; botocore {botocore.__version__}, "
            f"aiobotocore {aiobotocore.__version__}, aioboto3 {aioboto3.__version__}",
            file=sys.stderr,
        )
        return asyncio.run(bench(endpoint, args.ops, args.seq, args.tasks, args.rounds))
    finally:
        SERVERS.stop()


if __name__ == "__main__":
    sys.exit(main())
