"""A fault at every write point of every scenario, on memory and SQLite, and of a subset of
them on DynamoDB Local and on a memory store claiming DynamoDB's item expiry (issue 7).

For each scenario: one run without faults records its write points; then one run per (write
point, fault kind) injects that fault: the write fails before applying, applies and then reports
a failure (a lost response), or the process dies just before or just after it (a new engine
takes over the store). After recovery, the invariants of :mod:`tests.faults.harness` and the
scenario's own must hold. The table (scenarios x fault kinds: runs, violations) is printed
with the test's output and kept in ``.tools/logs/fault-table-{backend}.txt``.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backends.api import Backend
from backends.faults import ALL_FAULTS, FaultPlan
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from tests.faults.harness import run
from tests.faults.scenarios import SCENARIOS
from tests.support.memory_stores import ExpiringMemoryBackend

LOG_DIR = Path(__file__).resolve().parents[2] / ".tools" / "logs"


def _makers(tmp_path: Path) -> dict[str, Callable[[], Backend]]:
    counter = iter(range(1_000_000))
    return {
        "memory": MemoryBackend,
        "memory+expiry": ExpiringMemoryBackend,
        "sqlite": lambda: SqliteBackend(tmp_path / f"db-{next(counter)}.sqlite"),
    }


def _dynamodb() -> Callable[[], Backend]:
    """A fresh table on DynamoDB Local per run."""
    from backends.dynamodb import DynamoDbBackend
    from infra.provision import create_table
    from tests.support.aws import SERVERS, aws_test_env

    aws_test_env()
    SERVERS.dynamodb()
    client = SERVERS.client("dynamodb")

    class _Dropped(DynamoDbBackend):
        """Drops its table when closed: DynamoDB Local stalls under hundreds of tables."""

        async def close(self) -> None:
            await super().close()
            client.delete_table(TableName=self.table)

    def make() -> Backend:
        table = f"f-{uuid.uuid4().hex[:12]}"
        create_table(client, table)
        return _Dropped(table, client=client, owns_clients=False)

    return make


#: The subset of scenarios run on DynamoDB Local (each run makes a table: slower). The
#: workflow-promise scenario is left out there: after a few hundred runs in one DynamoDB Local
#: process, some of its runs stall for minutes (every one of them passes on its own).
DYNAMODB_SCENARIOS = {
    "greet",
    "counter, hot key",
    "call+send+delayed",
    "admin kill",
    "our SDK, checkpoints",
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["memory", "memory+expiry", "sqlite", "dynamodb"])
async def test_every_write_point(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make = _dynamodb() if backend == "dynamodb" else _makers(tmp_path)[backend]
    scenarios = [s for s in SCENARIOS if backend != "dynamodb" or s.name in DYNAMODB_SCENARIOS]
    if backend == "memory+expiry":  # (the 100 sends notify nobody: the same path as "greet")
        scenarios = [s for s in scenarios if s.name != "100 sends"]
    runs: collections.Counter[tuple[str, str]] = collections.Counter()
    bad: collections.Counter[tuple[str, str]] = collections.Counter()
    details: list[str] = []
    points_of: dict[str, int] = {}
    for scenario in scenarios:
        probe, violations = await run(scenario, FaultPlan.counting(), make)
        assert [] == violations, f"{scenario.name} without faults: {violations}"
        points_of[scenario.name] = len(probe.points)
        points = probe.points
        if backend == "sqlite" and len(points) > 40:
            # The same few writes repeated a hundred times: every one on memory, a sample here.
            points = points[:10] + points[10:-10:7] + points[-10:]
        elif backend == "dynamodb" and len(points) > 6:
            points = points[:: -(-len(points) // 6)]  # at most 6 points a scenario: a table a run
        for plan in FaultPlan.each(points):
            ((index, fault),) = plan.faults.items()
            task = asyncio.ensure_future(run(scenario, plan, make))
            done, _ = await asyncio.wait({task}, timeout=120)
            if done:
                _faulty, violations = task.result()
            else:
                violations = ["did not finish within 120 s", *_stacks()]
                task.cancel()
            runs[(scenario.name, fault)] += 1
            if violations:
                bad[(scenario.name, fault)] += 1
                label = probe.points[index].label if index < len(probe.points) else "?"
                details.append(
                    f"{scenario.name} / {fault} at point {index} ({label}): {violations}"
                )
    table = _table(backend, points_of, runs, bad)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"fault-table-{backend}.txt").write_text(table + "\n" + "\n".join(details) + "\n")
    with capsys.disabled():
        print("\n" + table)
    assert [] == details


def _stacks() -> list[str]:
    """Where the tasks of a run that did not finish are waiting (for the report)."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        where: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(where) < 12:  # follow the await chain inwards
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                where.append(f"{frame.f_code.co_filename.split('/')[-1]}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        out.append(" -> ".join(where))
    return out


def _table(
    backend: str,
    points_of: dict[str, int],
    runs: collections.Counter[tuple[str, str]],
    bad: collections.Counter[tuple[str, str]],
) -> str:
    kinds = [str(f) for f in ALL_FAULTS]
    head = f"{'scenario (' + backend + ')':26}{'points':>7}" + "".join(f"{k:>15}" for k in kinds)
    head += "   (cells: runs with a violation / runs)"
    lines = [head, "-" * len(head)]
    for name, points in points_of.items():
        cells = "".join(f"{f'{bad[(name, k)]}/{runs[(name, k)]}':>15}" for k in kinds)
        lines.append(f"{name:26}{points:>7}{cells}")
    total_runs = sum(runs.values())
    total_bad = sum(bad.values())
    lines.append(f"violations / runs: {total_bad} / {total_runs}")
    return "\n".join(lines)
