"""Short chaos runs (issue 7): ``kill -9`` of the runtime under a mixed load, on SQLite with one
engine and on DynamoDB Local with three engines sharing the table. The long form runs on demand
(``python -m tests.chaos.run --help``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import ChaosConfig, run
from tests.support.aws import SERVERS


@pytest.mark.parametrize(
    ("storage", "engines"), [("sqlite", 1), ("dynamodb", 3)], ids=["sqlite-x1", "dynamodb-x3"]
)
async def test_kill9_under_load_loses_and_doubles_nothing(
    storage: str, engines: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ChaosConfig(
        storage=storage,
        engines=engines,
        duration_s=15.0,
        jobs=90,
        seed=7,
        dynamodb_endpoint=SERVERS.dynamodb() if storage == "dynamodb" else None,
    )
    report = await run(config, tmp_path)
    with capsys.disabled():
        print("\n" + report.summary())
    assert report.kills >= 3
    assert report.acknowledged == report.submitted
    assert [] == report.lost
    assert [] == report.stuck
    assert [] == report.doubled
    assert [] == report.unexplained_reruns
    assert [] == report.problems
