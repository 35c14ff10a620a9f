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


def millis(d: timedelta | None) -> int | None:
    """Whole milliseconds of ``d`` (``None`` stays ``None``)."""
    return None if d is None else int(d.total_seconds() * 1000)
