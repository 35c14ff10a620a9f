"""User-facing option objects: per-step ``RunOptions`` and the invocation retry policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from restate_lambda.serde import DefaultSerde, Serde

T = TypeVar("T")


@dataclass
class RunOptions(Generic[T]):
    """Options of ``ctx.run_typed``: serde / type hint and the step's retry policy.

    Without any retry field the invocation's retry policy applies; with one, the step retries
    exponentially (initial 50 ms, factor 2, max interval 10 s) and fails with a
    :class:`~restate_lambda.errors.TerminalError` after ``max_attempts`` / ``max_duration``.
    """

    serde: Serde[T] = DefaultSerde()  # noqa: RUF009
    type_hint: Any = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    max_retry_duration: timedelta | None = None


@dataclass
class InvocationRetryPolicy:
    """Retry policy Restate applies to failed attempts (discovery manifest v4)."""

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None


#: Handler metadata key carrying the schedules declared with ``schedules=[...]`` (read by the
#: runtime when the deployment is registered).
SCHEDULES_METADATA_KEY = "restate_lambda.schedules"


@dataclass
class Schedule:
    """A cron schedule declared on a handler: ``@svc.handler(schedules=[Schedule("0 3 * * *")])``.

    The runtime fires one invocation per tick (the tick's id is its idempotency key), with
    ``body`` as JSON input, on object ``key`` (required for virtual objects; a workflow without
    one runs once per tick under its own id). Missed ticks: ``catch-up`` (at most
    ``max_catch_up``) or ``skip``. Ticks carry ``x-restate-schedule-id`` and
    ``x-restate-schedule-tick`` headers. A plain string is a cron expression in UTC.
    """

    cron: str
    timezone: str = "UTC"
    name: str | None = None
    key: str | None = None
    body: Any = None
    missed_ticks: Literal["catch-up", "skip"] = "catch-up"
    max_catch_up: int = 100


def with_schedules(
    metadata: dict[str, str] | None, schedules: list[Schedule | str] | None
) -> dict[str, str] | None:
    """``metadata`` with the schedules encoded under :data:`SCHEDULES_METADATA_KEY`."""
    if not schedules:
        return metadata
    import json

    entries = []
    for s in schedules:
        sched = Schedule(s) if isinstance(s, str) else s
        entry = {k: v for k, v in vars(sched).items() if v is not None}
        entries.append(entry)
    return {**(metadata or {}), SCHEDULES_METADATA_KEY: json.dumps(entries)}


def millis(d: timedelta | None) -> int | None:
    """Whole milliseconds of ``d`` (``None`` stays ``None``)."""
    return None if d is None else int(d.total_seconds() * 1000)
