"""Clients waiting in this process for invocations to complete, and the outcomes they get.

Waiting here is not durable and need not be: a blocking ingress call or attach is tied to its
HTTP connection. Whoever commits a completion in this process resolves the futures at once;
otherwise (the invocation runs on another engine) the waiter polls the store, backing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from invoker import records as rec
from invoker.api import NotFoundError, Outcome, UnavailableError
from invoker.store import Store

log = logging.getLogger("restate_lambda.outcomes")


def log_outcome(inv: rec.Invocation) -> None:
    """One line per completed invocation, written by the process that committed it."""
    target = (
        f"{inv.service}/{inv.handler}"
        if inv.key is None
        else f"{inv.service}/{inv.key}/{inv.handler}"
    )
    took = max((inv.completed_ms or inv.modified_ms) - inv.created_ms, 0)
    failure = inv.result.failure if inv.result is not None else None
    extra = {"invocation_id": inv.id, "target": target, "duration_ms": took}
    if failure is None:
        log.info(
            "invocation %s %s succeeded in %d ms",
            inv.id,
            target,
            took,
            extra={**extra, "outcome": "success"},
        )
    else:
        log.warning(
            "invocation %s %s failed in %d ms: [%d] %s",
            inv.id,
            target,
            took,
            failure.code,
            failure.message,
            extra={**extra, "outcome": "failure", "code": failure.code},
        )


def outcome_of(inv: rec.Invocation, *, first_response: bool = False) -> Outcome:
    """The client-facing outcome of a completed invocation.

    Like Restate 1.7 (which gives every ingress call an idempotency key), attach, output and
    duplicate responses carry ``idempotency-expires``; the first response does not.
    """
    result = inv.result or rec.Result(value=b"")
    expires = None if first_response or inv.invoked_by != "ingress" else inv.expires_ms
    if result.failure is not None:
        return Outcome(
            invocation_id=inv.id,
            ok=False,
            failure_code=result.failure.code,
            failure_message=result.failure.message,
            failure_metadata=dict(result.failure.metadata),
            idempotency_expires_ms=expires,
        )
    return Outcome(
        invocation_id=inv.id,
        ok=True,
        value=result.value or b"",
        content_type=inv.output_content_type,
        idempotency_expires_ms=expires,
    )


class LocalWaiters:
    """Futures of in-process clients, keyed by invocation id."""

    def __init__(
        self, store: Store, is_driven_here: Callable[[str], bool], poll_s: float = 0.5
    ) -> None:
        self._store = store
        self._futures: dict[str, list[asyncio.Future[Outcome]]] = {}
        #: Whether an invocation's attempt runs here: its record may not be stored yet (a
        #: deferred creation).
        self._is_driven_here = is_driven_here
        self._poll_s = poll_s

    def register(self, inv_id: str) -> asyncio.Future[Outcome]:
        """A future resolved when ``inv_id`` completes in this process."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(inv_id, []).append(future)
        return future

    def drop(self, inv_id: str, future: asyncio.Future[Outcome]) -> None:
        """Forget a future (its client left or got the outcome another way)."""
        futures = self._futures.get(inv_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._futures[inv_id]

    def resolve(self, inv: rec.Invocation) -> None:
        """``inv`` completed (a commit of this process): log it, hand its outcome to every
        local waiter."""
        log_outcome(inv)
        futures = self._futures.pop(inv.id, None)
        if not futures:
            return
        outcome = outcome_of(inv, first_response=True)
        for f in futures:
            if not f.done():
                f.set_result(outcome)

    def fail(self, inv_id: str, error: Exception) -> None:
        """The invocation was never stored (its creating commit failed): tell the waiters."""
        for f in self._futures.pop(inv_id, []):
            if not f.done():
                f.set_exception(error)

    async def wait(self, inv_id: str, future: asyncio.Future[Outcome]) -> Outcome:
        """Wait for ``future``, polling the store as a fallback (another engine may run it).

        The poll is due when a timer completes the awaited future with a marker (one timer
        handle per wait: ``asyncio.wait`` with a timeout cost 10 us more per call); the next
        wait is on a future registered anew.
        """
        loop = asyncio.get_running_loop()
        try:
            delay = self._poll_s
            while True:
                timer = loop.call_later(delay, _poll_due, future)
                try:
                    got = await future
                finally:
                    timer.cancel()
                if got is not _POLL:
                    return got
                # An outcome resolved while this ran finds the store completed below.
                self.drop(inv_id, future)
                future = self.register(inv_id)
                found = await self._store.invocation(inv_id)
                if found is None:
                    if self._is_driven_here(inv_id):
                        continue  # a deferred first attempt still running here
                    raise NotFoundError("not found")
                if found.inv.status == rec.Status.COMPLETED:
                    return outcome_of(found.inv)
                delay = min(delay * 2, max(5.0, self._poll_s))
        finally:
            self.drop(inv_id, future)
            if future.done() and not future.cancelled():
                with contextlib.suppress(Exception):
                    future.exception()


#: What a waiter's future holds when its poll of the store is due (not an outcome).
_POLL: Any = object()


def _poll_due(future: asyncio.Future[Outcome]) -> None:
    if not future.done():
        future.set_result(_POLL)


def unavailable(inv_id: str) -> UnavailableError:
    """The error a client gets when its invocation could not be stored."""
    return UnavailableError(f"invocation {inv_id} could not be stored; retry the request")
