"""Retry policy of ``ctx.run`` steps: when a failing closure ends the attempt or fails the step."""

from __future__ import annotations


class RunRetryPolicy:
    """Exponential (or fixed, when ``factor`` is 1) retries of one run step, in milliseconds.

    ``max_attempts`` counts every execution including the first; when it or ``max_duration_ms``
    is reached the step fails with a :class:`~restate_lambda.errors.TerminalError`.
    """

    __slots__ = (
        "factor",
        "initial_interval_ms",
        "max_attempts",
        "max_duration_ms",
        "max_interval_ms",
    )

    def __init__(
        self,
        initial_interval_ms: int | None = 50,
        factor: float = 2.0,
        max_interval_ms: int | None = 10_000,
        max_attempts: int | None = None,
        max_duration_ms: int | None = None,
    ) -> None:
        self.initial_interval_ms = initial_interval_ms
        self.factor = factor
        self.max_interval_ms = max_interval_ms
        self.max_attempts = max_attempts
        self.max_duration_ms = max_duration_ms


def next_retry_delay(
    policy: RunRetryPolicy | None,
    attempts: int,
    duration_ms: int,
    delay_override_ms: int | None = None,
) -> int | bool:
    """``False``: give up (fail the step); ``True``: retry with the invocation's retry policy;
    an int: retry after that many milliseconds. ``attempts`` includes the one that just failed."""
    if policy is None:
        return True if delay_override_ms is None else delay_override_ms
    if (policy.max_attempts is not None and policy.max_attempts <= attempts) or (
        policy.max_duration_ms is not None and policy.max_duration_ms <= duration_ms
    ):
        return False
    if delay_override_ms is not None:
        return delay_override_ms
    if policy.initial_interval_ms is None:
        return True
    delay = policy.initial_interval_ms * policy.factor ** max(0, attempts - 1)
    if policy.max_interval_ms is not None:
        delay = min(delay, policy.max_interval_ms)
    return int(delay)
