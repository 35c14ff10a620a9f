"""The sweeper: acts on everything the store says is due.

It reads the backend's due index, which holds every obligation a crash could leave behind:

* invocation records (``meta``): runnable, backing off, scheduled, suspended until a sleep ends,
  or running under a lease that ends (the driver died), and completed ones past retention;
* pending notifications (``n/``) delivered while an attempt ran, due at its lease end;
* attach waiters (``w/``) written while their target ran;
* outbox items (``o/``) of commits whose engine did not get to apply them, and failed ones
  backing off;
* items of other partitions, handed to whoever registered for their prefix (:meth:`Sweeper.on_due`:
  cron schedules).

Handling an item is idempotent and never blocks the others: outbox items and waiters run
concurrently (bounded), invocations are handed to the drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from backends.api import Backend, Item
from invoker import keys
from invoker import records as rec
from invoker.config import EngineConfig
from invoker.drivers import Drivers
from invoker.lifecycle import Lifecycle
from invoker.outbox import Outbox
from invoker.results import Results
from invoker.store import decode_invocation
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.sweeper")

#: Outbox items and waiters handled at once by one sweep.
_CONCURRENCY = 32


class Sweeper:
    """Fires what is due (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        config: EngineConfig,
        drivers: Drivers,
        outbox: Outbox,
        results: Results,
        lifecycle: Lifecycle,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._config = config
        self._drivers = drivers
        self._outbox = outbox
        self._results = results
        self._lifecycle = lifecycle
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._handlers: dict[str, Callable[[Item], Awaitable[object]]] = {}

    def on_due(self, pk_prefix: str, handler: Callable[[Item], Awaitable[object]]) -> None:
        """Have ``handler`` called (concurrently, errors logged) for each due item whose
        partition key starts with ``pk_prefix`` (not ``inv/``)."""
        self._handlers[pk_prefix] = handler

    async def sweep_once(self) -> int:
        """Handle one batch of due items; return how many there were."""
        now = self._clock.now_ms()
        items = await self._backend.due(now, self._config.sweep_batch)
        jobs = []
        for item in items:
            if not item.pk.startswith(keys.INV_PREFIX):
                for prefix, handler in self._handlers.items():
                    if item.pk.startswith(prefix):
                        jobs.append(self._guarded(item, handler(item)))
                        break
                continue
            inv_id = item.pk[len(keys.INV_PREFIX) :]
            sk = item.sk
            if sk == keys.META:
                if decode_invocation(item.value).status == rec.Status.COMPLETED:
                    jobs.append(self._guarded(item, self._lifecycle.purge_if_expired(inv_id)))
                else:
                    self._drivers.dispatch(inv_id)
            elif sk.startswith(keys.NOTIFY_PREFIX):
                self._drivers.dispatch(inv_id)
            elif sk.startswith(keys.OUTBOX_PREFIX):
                jobs.append(self._guarded(item, self._outbox.apply(item)))
            elif sk.startswith(keys.WAITER_PREFIX):
                jobs.append(self._guarded(item, self._results.recheck_waiter(item)))
        if jobs:
            await asyncio.gather(*jobs)
        return len(items)

    async def _guarded(self, item: Item, job: object) -> None:
        async with self._slots:
            try:
                await job  # type: ignore[misc]
            except Exception:
                log.exception("sweeping %s %s failed", item.pk, item.sk)

    async def loop(self) -> None:
        """Sweep until cancelled, sleeping until the next due item or a kick."""
        interval_ms = int(self._config.sweep_interval_s * 1000)
        kick = self._drivers.kick
        while True:
            try:
                n = await self.sweep_once()
                if n >= self._config.sweep_batch:
                    await asyncio.sleep(0)
                    continue
                kick.clear()
                now = self._clock.now_ms()
                upcoming = await self._backend.due(now + interval_ms, 1)
                wait_ms = interval_ms
                if upcoming and upcoming[0].due_ms is not None:
                    wait_ms = max(1, min(interval_ms, upcoming[0].due_ms - now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), wait_ms / 1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer loop iteration failed")
                await asyncio.sleep(1)
