"""Reading the side-effect log written by ``tests.support.sdk_services.record`` (a file per tag)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Effects:
    """The effects directory shared with the SDK app process."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def lines(self, tag: str) -> list[str]:
        try:
            return (self.root / f"{tag}.log").read_text().splitlines()
        except FileNotFoundError:
            return []

    def count(self, tag: str, what: str) -> int:
        return sum(1 for line in self.lines(tag) if line == what)

    async def wait_for(self, tag: str, what: str, at_least: int = 1, timeout: float = 15) -> int:
        """Wait until ``what`` was recorded at least ``at_least`` times for ``tag``."""

        async def current() -> int:
            return self.count(tag, what)

        return await poll(
            current,
            lambda n: n >= at_least,
            timeout=timeout,
            what=f"{at_least}x {what!r} in effects of {tag}",
        )


async def poll(
    fn: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``fn`` until ``until(result)``; return that result or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await fn()
        if until(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        await asyncio.sleep(interval)
