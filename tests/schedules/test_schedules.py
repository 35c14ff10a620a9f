"""Cron schedules: exactly one invocation per tick, however many engines sweep one store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.sqlite import SqliteBackend
from invoker.api import BadRequestError, ConflictingRequestError, NotFoundError
from restate_lambda.clock import ManualClock
from tests.schedules import app
from tests.schedules.cluster import Cluster

MINUTE = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    app.calls.clear()
    db = tmp_path / "shared.sqlite"
    c = Cluster(lambda: SqliteBackend(db), 3, ManualClock(T0))
    await c.start()
    try:
        yield c
    finally:
        await c.close()


def _ticks() -> list[str | None]:
    return [t for name, t, _ in app.calls if name == "Cron/tick"]


def _every_minute(**extra: object) -> dict[str, object]:
    return {"id": "every-minute", "cron": "* * * * *", "target": "Cron/tick", **extra}


async def test_three_engines_an_hour_minute_by_minute(cluster: Cluster) -> None:
    """The must-hold: three engines on one SQLite store, a schedule every minute, an hour of
    manual time: exactly 60 invocations, one per tick."""
    await cluster.engines[1].create_schedule(_every_minute())
    for _ in range(60):
        await cluster.advance(MINUTE)
    assert len(await cluster.invocations("Cron", "tick")) == 60
    ticks = [t for name, t, _ in app.calls if name == "Cron/tick"]
    assert len(ticks) == 60 and len(set(ticks)) == 60
    assert ticks[0] == "2026-01-01T00:01:00.000Z"
    assert ticks[-1] == "2026-01-01T01:00:00.000Z"
    shown = await cluster.engines[2].get_schedule("every-minute")
    assert shown["fired"] == 60 and shown["skipped"] == 0
    assert shown["next_tick"] == "2026-01-01T01:01:00.000Z"


async def test_three_engines_an_hour_in_one_jump_catch_up(cluster: Cluster) -> None:
    """The clock jumps an hour at once: the 60 missed ticks fire (catch-up), once each."""
    await cluster.engines[0].create_schedule(_every_minute())
    await cluster.advance(60 * MINUTE)
    assert len(await cluster.invocations("Cron", "tick")) == 60
    assert len({t for n, t, _ in app.calls if n == "Cron/tick"}) == 60
    await cluster.advance(60 * MINUTE - 1)
    assert len(await cluster.invocations("Cron", "tick")) == 119


async def test_catch_up_is_bounded(cluster: Cluster) -> None:
    await cluster.engines[0].create_schedule(_every_minute(max_catch_up=5))
    await cluster.advance(60 * MINUTE)
    ticks = sorted(t for n, t, _ in app.calls if n == "Cron/tick")
    assert ticks == [f"2026-01-01T00:{m:02d}:00.000Z" for m in range(56, 60)] + [
        "2026-01-01T01:00:00.000Z"
    ]
    shown = await cluster.engines[0].get_schedule("every-minute")
    assert shown["fired"] == 5 and shown["skipped"] == 55


async def test_skip_fires_only_the_latest_missed_tick(cluster: Cluster) -> None:
    await cluster.engines[0].create_schedule(_every_minute(missed_ticks="skip"))
    await cluster.advance(60 * MINUTE + 30_000)
    assert _ticks() == ["2026-01-01T01:00:00.000Z"]
    shown = await cluster.engines[0].get_schedule("every-minute")
    assert shown["fired"] == 1 and shown["skipped"] == 59


async def test_pause_resume_delete(cluster: Cluster) -> None:
    e = cluster.engines[0]
    await e.create_schedule(_every_minute())
    await cluster.advance(2 * MINUTE)
    assert len(_ticks()) == 2
    paused = await e.pause_schedule("every-minute", True)
    assert paused["paused"] is True and paused["next_tick"] is None
    await cluster.advance(10 * MINUTE)
    assert len(_ticks()) == 2  # nothing fires, nothing is owed
    resumed = await e.pause_schedule("every-minute", False)
    assert resumed["next_tick"] == "2026-01-01T00:13:00.000Z"
    await cluster.advance(MINUTE)
    assert len(_ticks()) == 3
    await e.delete_schedule("every-minute")
    await cluster.advance(5 * MINUTE)
    assert len(_ticks()) == 3
    with pytest.raises(NotFoundError):
        await e.get_schedule("every-minute")
    with pytest.raises(NotFoundError):
        await e.delete_schedule("every-minute")


async def test_create_is_idempotent_and_validated(cluster: Cluster) -> None:
    e = cluster.engines[0]
    first, created = await e.create_schedule(_every_minute())
    again, created_again = await e.create_schedule(_every_minute())
    assert created and not created_again and again == first
    with pytest.raises(ConflictingRequestError):
        await e.create_schedule(_every_minute(cron="*/2 * * * *"))
    with pytest.raises(BadRequestError):
        await e.create_schedule({"id": "x", "cron": "61 * * * *", "target": "Cron/tick"})
    with pytest.raises(BadRequestError):
        await e.create_schedule(
            {"id": "x", "cron": "* * * * *", "timezone": "Mars/Base", "target": "Cron/tick"}
        )
    with pytest.raises(NotFoundError):
        await e.create_schedule({"id": "x", "cron": "* * * * *", "target": "Nope/tick"})
    with pytest.raises(BadRequestError):  # a virtual object needs a key
        await e.create_schedule({"id": "x", "cron": "* * * * *", "target": "Ticks/record"})
    with pytest.raises(BadRequestError):
        await e.create_schedule({"id": "bad id", "cron": "* * * * *", "target": "Cron/tick"})


async def test_object_target_body_and_workflow_per_tick(cluster: Cluster) -> None:
    e = cluster.engines[0]
    await e.create_schedule(
        {"id": "obj", "cron": "*/10 * * * *", "target": "Ticks/k1/record", "body": {"a": 1}}
    )
    await e.create_schedule({"id": "wf", "cron": "0 * * * *", "target": "Report/run"})
    await cluster.advance(60 * MINUTE)
    records = [arg for n, _t, arg in app.calls if n == "Ticks/record"]
    assert records == [{"a": 1}] * 6
    state = await e.get_state("Ticks", "k1")
    assert state["n"] == b"6"
    reports = [key for n, key, _ in app.calls if n == "Report/run"]
    assert reports == ["wf@1767229200000"]


async def test_declared_in_code(cluster: Cluster) -> None:
    """``Cron/declared`` declares ``*/5 * * * *`` in its metadata: registering created it."""
    listed = await cluster.engines[0].list_schedules()
    declared = [s for s in listed if s["origin"] == "code"]
    assert [s["id"] for s in declared] == [
        "Cron.declared",
        "Cron.typed.hourly",
        "Cron.typed.weekdays",
    ]
    assert declared[0]["cron"] == "*/5 * * * *"
    weekdays = declared[2]
    assert weekdays["timezone"] == "Europe/Berlin"
    # 2026-01-01 is a Thursday: 09:00 in Berlin (winter) is 08:00 UTC.
    assert weekdays["next_tick"] == "2026-01-01T08:00:00.000Z"
    assert declared[1]["body"] == {"every": "hour"}
    await cluster.advance(30 * MINUTE)
    assert len([n for n, *_ in app.calls if n == "Cron/declared"]) == 6
    assert [a for n, _t, a in app.calls if n == "Cron/typed"] == []
    # Registering again keeps its next tick and counters.
    await cluster.engines[1].register_deployment("asgi://sched", force=True)
    again = await cluster.engines[0].get_schedule("Cron.declared")
    assert again["fired"] == 6
