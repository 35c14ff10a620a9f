"""Cron expressions, zones and daylight saving (cronsim's rules, Debian cron's behaviour)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from invoker.cron import CronError, CronSpec, iso


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_daily_job_on_dst_days_runs_once() -> None:
    berlin = CronSpec("30 2 * * *", "Europe/Berlin")
    # Clocks go forward at 02:00 on 2026-03-29: 02:30 does not exist, the job runs at 03:00.
    spring = berlin.next_after(_ms("2026-03-28T12:00:00+01:00"))
    assert iso(spring) == "2026-03-29T01:00:00.000Z"
    # They go back at 03:00 on 2026-10-25: 02:30 happens twice, the job runs once.
    first = berlin.next_after(_ms("2026-10-24T12:00:00+02:00"))
    second = berlin.next_after(first)
    assert iso(first) == "2026-10-25T00:30:00.000Z"
    assert iso(second) == "2026-10-26T01:30:00.000Z"


def test_hourly_job_runs_through_the_repeated_hour() -> None:
    ticks = CronSpec("0 * * * *", "Europe/Berlin").due(
        _ms("2026-10-25T00:00:00+02:00"), _ms("2026-10-25T04:00:00+01:00"), 100
    )[0]
    assert len(ticks) == 6  # 00, 01, 02 (CEST), 02 (CET), 03, 04


def test_aliases_seconds_and_errors() -> None:
    t0 = _ms("2026-01-01T00:00:00+00:00")
    assert iso(CronSpec("@hourly").next_after(t0)) == "2026-01-01T01:00:00.000Z"
    assert iso(CronSpec("@daily").next_after(t0)) == "2026-01-02T00:00:00.000Z"
    assert iso(CronSpec("*/15 * * * * *").next_after(t0)) == "2026-01-01T00:00:15.000Z"
    for bad in ("61 * * * *", "* * *", "@never", ""):
        with pytest.raises(CronError):
            CronSpec(bad)
    with pytest.raises(CronError):
        CronSpec("* * * * *", "Nowhere/City")


def test_due_keeps_the_latest_and_counts_the_rest() -> None:
    spec = CronSpec("* * * * *")
    t0 = _ms("2026-01-01T00:01:00+00:00")
    ticks, dropped = spec.due(t0, t0 + 59 * 60_000, 10)
    assert len(ticks) == 10 and dropped == 50
    assert iso(ticks[0]) == "2026-01-01T00:51:00.000Z"
    assert spec.due(t0 + 1, t0, 10) == ([], 0)
    # Far behind: bounded work, still the latest ticks.
    year = spec.due(t0, t0 + 366 * 86_400_000, 3)[0]
    assert iso(year[-1]) == "2027-01-02T00:01:00.000Z"
