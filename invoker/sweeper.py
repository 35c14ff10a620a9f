"""The sweeper: fires due timers and re-drives work whose time has come.

It reads the backend's due index: sleep timers (``t/``), invocation records that are
scheduled, backing off, left runnable or whose lease expired (``meta``), outbox effects a crash
left behind (``o/``), and completed invocations past their retention (``meta``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from backends.api import ConflictError, Delete, Item
from invoker import keys
from invoker import records as rec
from invoker.processing import notification_entry
from restate_lambda.protocol.messages import MessageType as T

if TYPE_CHECKING:
    from invoker.engine import Engine

log = logging.getLogger("restate_lambda.sweeper")


async def sweep_once(engine: Engine) -> int:
    """Handle one batch of due items; return how many there were."""
    now = engine.clock.now_ms()
    items = await engine.backend.due(now, engine.config.sweep_batch)
    for item in items:
        if not item.pk.startswith(keys.INV_PREFIX):
            continue
        inv_id = item.pk[len(keys.INV_PREFIX) :]
        try:
            if item.sk == keys.META:
                engine.dispatch(inv_id)
            elif item.sk.startswith(keys.TIMER_PREFIX):
                await fire_timer(engine, inv_id, item)
            elif item.sk.startswith(keys.OUTBOX_PREFIX):
                await recover_effect(engine, inv_id, item)
        except Exception:
            log.exception("sweeping %s %s failed", item.pk, item.sk)
    return len(items)


async def fire_timer(engine: Engine, inv_id: str, item: Item) -> None:
    """Complete a sleep: deliver its notification, then drop the timer (fire once)."""
    cid = int(item.sk[len(keys.TIMER_PREFIX) :])
    entry = notification_entry(int(T.SLEEP_COMPLETION_NOTIFICATION), cid, None)
    await engine.deliver(inv_id, keys.completion_notification(cid), entry)
    with contextlib.suppress(ConflictError):
        await engine.backend.write([Delete(item.pk, item.sk, expect=item.version)])


async def recover_effect(engine: Engine, inv_id: str, item: Item) -> None:
    """Re-apply an outbox effect whose attempt crashed before applying it."""
    from invoker.effects import apply_effect

    effect = rec.decode(item.value, rec.Effect)
    await apply_effect(engine, inv_id, effect)
    with contextlib.suppress(ConflictError):
        await engine.backend.write([Delete(item.pk, item.sk, expect=item.version)])


async def timer_loop(engine: Engine) -> None:
    """Sweep until cancelled, sleeping until the next due item or a kick."""
    interval_ms = int(engine.config.sweep_interval_s * 1000)
    while True:
        try:
            n = await sweep_once(engine)
            if n >= engine.config.sweep_batch:
                await asyncio.sleep(0)
                continue
            engine._kick.clear()
            now = engine.clock.now_ms()
            upcoming = await engine.backend.due(now + interval_ms, 1)
            wait_ms = interval_ms
            if upcoming and upcoming[0].due_ms is not None:
                wait_ms = max(1, min(interval_ms, upcoming[0].due_ms - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(engine._kick.wait(), wait_ms / 1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer loop iteration failed")
            await asyncio.sleep(1)
