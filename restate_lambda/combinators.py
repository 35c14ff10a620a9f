"""Combinators over durable futures; their outcome is journaled, so replays agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from restate_lambda.awaitables import AllCompleted, FirstCompleted
from restate_lambda.errors import TerminalError
from restate_lambda.futures import RestateDurableFuture


def _attempt_of(futures: list[Any]) -> Any:
    attempt = None
    for f in futures:
        if not isinstance(f, RestateDurableFuture):
            raise TerminalError("all futures must be created by a restate_lambda context")
        if attempt is None:
            attempt = f._attempt
        elif attempt is not f._attempt:
            raise TerminalError("all futures must be created by the same context")
    return attempt


async def gather(*futures: RestateDurableFuture[Any]) -> list[RestateDurableFuture[Any]]:
    """Wait until every future completed (no short-circuit); returns the futures."""
    items = list(futures)
    if not items:
        return []
    attempt = _attempt_of(items)
    pending = [f.handle for f in items if not f.is_completed()]
    if pending:
        await attempt.poll(AllCompleted(list(pending)))
    return items


async def wait_completed(
    *futures: RestateDurableFuture[Any],
) -> tuple[list[RestateDurableFuture[Any]], list[RestateDurableFuture[Any]]]:
    """Wait until at least one future completed: (completed, pending)."""
    items = list(futures)
    if not items:
        return [], []
    attempt = _attempt_of(items)
    done = [f for f in items if f.is_completed()]
    if done:
        return done, [f for f in items if not f.is_completed()]
    await attempt.poll(FirstCompleted([f.handle for f in items]))
    done = [f for f in items if f.is_completed()]
    return done, [f for f in items if f not in done]


async def as_completed(
    *futures: RestateDurableFuture[Any],
) -> AsyncIterator[RestateDurableFuture[Any]]:
    """Yield the futures in (journaled) completion order."""
    remaining = list(futures)
    while remaining:
        done, remaining = await wait_completed(*remaining)
        for f in done:
            yield f


async def select(**futures: RestateDurableFuture[Any]) -> list[Any]:
    """Race named futures: ``[name, value]`` of the first to complete."""
    if not futures:
        raise ValueError("at least one future must be passed")
    names = {id(f): k for k, f in futures.items()}
    async for f in as_completed(*futures.values()):
        return [names[id(f)], await f]
    raise AssertionError("unreachable")
