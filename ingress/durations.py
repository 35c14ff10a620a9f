"""Parsing the ``?delay=`` query parameter: humantime (``1m30s``) or ISO-8601 (``PT10S``)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_MS_PER_UNIT: dict[str, Decimal] = {}
for _names, _ms in (
    (("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"), Decimal("0.000001")),
    (("us", "µs", "usec", "usecs", "microsecond", "microseconds"), Decimal("0.001")),
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), Decimal(1)),
    (("s", "sec", "secs", "second", "seconds"), Decimal(1000)),
    (("m", "min", "mins", "minute", "minutes"), Decimal(60_000)),
    (("h", "hr", "hrs", "hour", "hours"), Decimal(3_600_000)),
    (("d", "day", "days"), Decimal(86_400_000)),
    (("w", "week", "weeks"), Decimal(7 * 86_400_000)),
):
    for _name in _names:
        _MS_PER_UNIT[_name] = _ms

_FRIENDLY_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]+)\s*,?")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:[.,]\d+)?)W)?(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?$",
    re.IGNORECASE,
)
_ISO_MS = {
    "w": Decimal(7 * 86_400_000),
    "d": Decimal(86_400_000),
    "h": Decimal(3_600_000),
    "m": Decimal(60_000),
    "s": Decimal(1000),
}


#: Longest delay accepted: 100 years (a datetime, an epoch-ms int64 and every backend hold it).
MAX_DELAY_MS = 100 * 365 * 86_400_000
#: Longest ``delay`` text parsed; anything longer is refused before parsing.
MAX_DELAY_TEXT = 64


class DurationError(ValueError):
    """The text is neither a humantime nor an ISO-8601 duration, or is out of range."""


def _parse_iso(text: str) -> int | None:
    match = _ISO.match(text)
    if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        return None
    total = Decimal(0)
    for unit, value in match.groupdict().items():
        if value is not None:
            total += Decimal(value.replace(",", ".")) * _ISO_MS[unit]
    return int(total)


def _parse_friendly(text: str) -> int:
    pos = 0
    total = Decimal(0)
    parts = 0
    while pos < len(text):
        match = _FRIENDLY_PART.match(text, pos)
        if match is None:
            raise DurationError(f"unexpected input at position {pos}")
        unit = match.group(2)
        factor = _MS_PER_UNIT.get(unit) or _MS_PER_UNIT.get(unit.lower())
        if factor is None:
            raise DurationError(f"unknown unit {unit!r}")
        try:
            total += Decimal(match.group(1)) * factor
        except InvalidOperation as exc:  # pragma: no cover - regex guarantees digits
            raise DurationError(str(exc)) from exc
        parts += 1
        pos = match.end()
    if parts == 0:
        raise DurationError("empty duration")
    return int(total)


def parse_delay_ms(text: str) -> int:
    """Milliseconds of a ``delay`` value; raises :class:`DurationError` when malformed."""
    stripped = text.strip()
    if not stripped:
        raise DurationError("empty duration")
    if len(stripped) > MAX_DELAY_TEXT:
        raise DurationError(f"duration longer than {MAX_DELAY_TEXT} characters")
    if stripped[0] in "pP":
        iso = _parse_iso(stripped)
        if iso is None:
            raise DurationError(f"invalid ISO-8601 duration {stripped!r}")
        ms = iso
    else:
        ms = _parse_friendly(stripped)
    if ms > MAX_DELAY_MS:
        raise DurationError(
            f"duration too large: the longest delay is {MAX_DELAY_MS // 86_400_000} days"
        )
    return ms
