"""The outbox: what must follow a commit, written in that commit and applied after it.

A commit that has effects on other records (create a child, deliver a signal, complete a
promise, pass a lock on, tell callers and attached invocations of a result) carries one outbox
item, ``o/{record version}`` in the committing invocation's partition, listing them in order.
The engine applies it right after the commit; if it dies first, the item falls due
``recovery_grace_ms`` later and the sweeper applies it. Effects are idempotent, so applying an
item twice (the engine and the sweeper racing) is harmless.

A failing effect does not block the others forever: the item records how far it got, backs off
exponentially and after ``max_outbox_tries`` becomes *dead*: kept, no longer due, listed by the
admin API (:meth:`Outbox.dead_items`) and retried on request (:meth:`Outbox.retry`).
"""

from __future__ import annotations

import logging

from backends.api import ConflictError, Delete, Item, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.commit import Committer, CommitUnknownError
from invoker.config import EngineConfig
from invoker.ports import EffectApplier
from invoker.store import decode_outbox
from invoker.tasks import Background
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.outbox")


class Outbox:
    """Builds outbox items for commits and applies them."""

    def __init__(
        self,
        committer: Committer,
        clock: Clock,
        config: EngineConfig,
        background: Background,
    ) -> None:
        self._committer = committer
        self._clock = clock
        self._config = config
        self._applier: EffectApplier | None = None
        self._background = background

    def bind(self, applier: EffectApplier) -> None:
        """Set what applies effects (wiring: the effects need parts that need the outbox)."""
        self._applier = applier

    def item(self, inv_id: str, new_version: int, effects: list[rec.Effect]) -> Put:
        """The outbox item of a commit that writes the invocation record at ``new_version``."""
        record = rec.OutboxRecord(effects=effects)
        due = self._clock.now_ms() + self._config.recovery_grace_ms
        return Put(keys.inv(inv_id), keys.outbox(new_version), rec.encode(record), due_ms=due)

    def apply_soon(self, item: Item) -> None:
        """Apply the outbox ``item`` (just committed) in the background."""
        self._background.spawn(self.apply(item))

    def committed(self, put: Put) -> Item:
        """The stored item a just-committed outbox ``put`` became (new items are version 1)."""
        return Item(put.pk, put.sk, put.value, (put.expect or 0) + 1, put.due_ms)

    async def apply(self, item: Item) -> bool:
        """Apply an outbox item's remaining effects; delete it when all applied.

        Never raises for a failing effect: the item is rescheduled with backoff (or marked
        dead). Returns whether every effect applied.
        """
        assert self._applier is not None, "Outbox.bind was not called"
        inv_id = item.pk[len(keys.INV_PREFIX) :]
        record = decode_outbox(item.value)
        if record.dead:
            return False
        for n in range(record.done, len(record.effects)):
            effect = record.effects[n]
            try:
                await self._applier.apply(inv_id, effect, f"{inv_id}/{item.sk}/{n}")
            except Exception as exc:
                await self._failed(item, record, n, exc)
                return False
        try:
            await self._committer.write([Delete(item.pk, item.sk, expect=item.version)])
        except ConflictError:
            pass  # applied and deleted (or rescheduled) by a racing copy
        except CommitUnknownError:
            log.warning("could not delete applied outbox item %s %s", item.pk, item.sk)
        return True

    async def _failed(self, item: Item, record: rec.OutboxRecord, n: int, exc: Exception) -> None:
        record.done = n
        record.tries += 1
        record.error = f"{record.effects[n].kind}: {exc!r}"[:2000]
        ops: list[WriteOp] = []
        due: int | None
        if record.tries >= self._config.max_outbox_tries:
            record.dead = True
            due = None
            ops.append(Put(keys.DEAD_OUTBOX, _dead_sk(item), b"", expect=None))
            log.error(
                "outbox item %s %s is dead after %d tries: %s",
                item.pk,
                item.sk,
                record.tries,
                record.error,
            )
        else:
            backoff = min(
                self._config.outbox_initial_backoff_ms * 2 ** (record.tries - 1),
                self._config.outbox_max_backoff_ms,
            )
            due = self._clock.now_ms() + backoff
            log.warning(
                "effect %d of outbox item %s %s failed (try %d, next in %d ms): %s",
                n,
                item.pk,
                item.sk,
                record.tries,
                backoff,
                record.error,
            )
        put = Put(item.pk, item.sk, rec.encode(record), expect=item.version, due_ms=due)
        try:
            await self._committer.write([put, *ops])
        except (ConflictError, CommitUnknownError):
            pass  # a racing copy moved it; the item stays due either way

    async def dead_items(self, limit: int = 1000) -> list[tuple[Item, rec.OutboxRecord]]:
        """Dead outbox items, for the admin API."""
        out: list[tuple[Item, rec.OutboxRecord]] = []
        backend = self._committer.backend
        for marker in await backend.query(keys.DEAD_OUTBOX, limit=limit):
            pk, _, sk = marker.sk.partition("|")
            item = await backend.get(pk, sk)
            if item is not None:
                out.append((item, decode_outbox(item.value)))
        return out

    async def retry(self, pk: str, sk: str) -> bool:
        """Re-arm a dead outbox item (due now, tries reset). False if there is none."""
        backend = self._committer.backend
        item = await backend.get(pk, sk)
        if item is None or not sk.startswith(keys.OUTBOX_PREFIX):
            return False
        record = decode_outbox(item.value)
        record.dead = False
        record.tries = 0
        now = self._clock.now_ms()
        await self._committer.write(
            [
                Put(pk, sk, rec.encode(record), expect=item.version, due_ms=now),
                Delete(keys.DEAD_OUTBOX, _dead_sk(item)),
            ]
        )
        self.apply_soon(Item(pk, sk, rec.encode(record), item.version + 1, now))
        return True


def _dead_sk(item: Item) -> str:
    return f"{item.pk}|{item.sk}"
