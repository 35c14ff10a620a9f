"""Cron expressions with time zones: when the ticks of a schedule fall.

Parsing and daylight-saving rules come from ``cronsim`` (the cron evaluator of Healthchecks.io),
which follows Debian cron: on the day clocks go forward a daily job whose time does not exist
runs at the first minute after the gap, and on the day they go back it runs once, not twice;
jobs that run every minute or hour run through both. Time zones are IANA names (``zoneinfo``,
with the ``tzdata`` package where the system has no database, as on Lambda).

Five fields (minute, hour, day of month, month, day of week), an optional sixth for seconds
(``*/15 * * * * *``), and the aliases ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``,
``@daily``, ``@midnight`` and ``@hourly``.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: Most ticks one walk looks at before it jumps ahead (a schedule far behind its time).
_WALK_LIMIT = 20_000


class CronError(ValueError):
    """A malformed cron expression or an unknown time zone."""


class CronSpec:
    """A cron expression in a time zone.

    Raises:
        CronError: the expression does not parse or the zone is unknown.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = expression.strip()
        self.timezone = timezone
        self._expr = ALIASES.get(self.expression.lower(), self.expression)
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"unknown time zone {timezone!r}") from exc
        try:
            CronSim(self._expr, datetime(2000, 1, 1, tzinfo=self._tz))
        except (CronSimError, ValueError, KeyError, IndexError) as exc:
            raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (epoch milliseconds)."""
        start = datetime.fromtimestamp(ms / 1000, UTC).astimezone(self._tz)
        return _ms(next(CronSim(self._expr, start)))

    def due(self, first_ms: int, now_ms: int, keep: int) -> tuple[list[int], int]:
        """The ticks from ``first_ms`` (itself a tick) up to ``now_ms`` included: the last
        ``keep`` of them, and how many older ones are dropped.

        Bounded work for a schedule far behind: past a few thousand ticks the walk restarts a
        day before ``now_ms``; the count of dropped ticks is then a lower bound.
        """
        if first_ms > now_ms:
            return [], 0
        kept: deque[int] = deque(maxlen=max(1, keep))
        seen = 0
        tick = first_ms
        start = datetime.fromtimestamp(first_ms / 1000, UTC).astimezone(self._tz)
        it = CronSim(self._expr, start)
        while tick <= now_ms:
            kept.append(tick)
            seen += 1
            if seen == _WALK_LIMIT:
                restart = max(tick, now_ms - 86_400_000)
                kept.clear()
                it = CronSim(
                    self._expr, datetime.fromtimestamp(restart / 1000, UTC).astimezone(self._tz)
                )
            tick = _ms(next(it))
        return list(kept), max(0, seen - len(kept))

    def describe(self) -> str:
        """A human description (``At 09:00 on Monday through Friday``)."""
        try:
            return str(CronSim(self._expr, datetime(2000, 1, 1, tzinfo=self._tz)).explain())
        except Exception:  # explain() does not cover every expression
            return self.expression


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    """RFC 3339 UTC time of epoch milliseconds (``None`` stays ``None``)."""
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
