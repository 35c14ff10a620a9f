"""Voluntary suspension before a deadline (AWS Lambda's ``get_remaining_time_in_millis``).

When the time left in the invocation drops below the margin, the attempt stops at the next step
boundary (before it starts another ``ctx.run`` closure) and answers with everything it has,
plus a suspension naming the runs it completed, so the runtime invokes it again at once with a
fresh time budget instead of seeing it die at the deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta


class DeadlinePolicy:
    """Stop at a step boundary once less than ``max(margin, fraction * budget)`` is left,
    the budget being the time left when the attempt started.

    (A plain class, not a dataclass: it is created at import time of every handler module.)
    """

    __slots__ = ("fraction", "margin")

    def __init__(self, margin: timedelta = timedelta(seconds=5), fraction: float = 0.1) -> None:
        self.margin = margin
        self.fraction = fraction

    def __repr__(self) -> str:
        return f"DeadlinePolicy(margin={self.margin!r}, fraction={self.fraction!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeadlinePolicy):
            return NotImplemented
        return (self.margin, self.fraction) == (other.margin, other.fraction)

    def __hash__(self) -> int:
        return hash((self.margin, self.fraction))


class Deadline:
    """The deadline of one attempt: ``remaining_ms()`` is the time left, in milliseconds."""

    def __init__(self, remaining_ms: Callable[[], int], policy: DeadlinePolicy) -> None:
        self._remaining_ms = remaining_ms
        budget = int(remaining_ms())
        margin = int(policy.margin.total_seconds() * 1000)
        #: Below this many milliseconds left, the attempt stops at the next step boundary.
        self.threshold_ms = max(margin, int(policy.fraction * budget))

    def near(self) -> bool:
        """True once the time left is below the threshold."""
        return int(self._remaining_ms()) < self.threshold_ms
