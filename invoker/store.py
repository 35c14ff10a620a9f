"""Typed reads of the engine's records (writes go through :mod:`invoker.commit`)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from backends.api import Backend, Item
from invoker import keys
from invoker import records as rec
from invoker.journal import Loaded, add_pending, load_partition
from invoker.notify_watch import NotificationWatch
from invoker.processing import Entry

_inv_decoder = msgspec.msgpack.Decoder(rec.Invocation)
_lock_decoder = msgspec.msgpack.Decoder(rec.LockRecord)
_state_decoder = msgspec.msgpack.Decoder(rec.StateRecord)
_promise_decoder = msgspec.msgpack.Decoder(rec.PromiseRecord)
_outbox_decoder = msgspec.msgpack.Decoder(rec.OutboxRecord)


def decode_invocation(data: bytes) -> rec.Invocation:
    """Decode an invocation record."""
    return _inv_decoder.decode(data)


def decode_lock(data: bytes) -> rec.LockRecord:
    """Decode a virtual object's lock record."""
    return _lock_decoder.decode(data)


def decode_promise(data: bytes) -> rec.PromiseRecord:
    """Decode a workflow promise."""
    return _promise_decoder.decode(data)


def decode_outbox(data: bytes) -> rec.OutboxRecord:
    """Decode an outbox item."""
    return _outbox_decoder.decode(data)


@dataclass(slots=True)
class Versioned:
    """An invocation record and the version it was read at."""

    inv: rec.Invocation
    version: int


class Store:
    """Reads invocations, object state and locks from the backend.

    ``watch``: on a sole engine, what its committer wrote to notification keys (lets
    :meth:`with_pending` skip reads that cannot find anything).
    """

    def __init__(self, backend: Backend, watch: NotificationWatch | None = None) -> None:
        self.backend = backend
        self._watch = watch

    async def invocation(self, inv_id: str) -> Versioned | None:
        """An invocation's record, or None."""
        item = await self.backend.get(keys.inv(inv_id), keys.META)
        if item is None:
            return None
        return Versioned(_inv_decoder.decode(item.value), item.version)

    async def partition(self, inv_id: str) -> tuple[Loaded | None, list[Item]]:
        """Everything an invocation owns (record, journal, pending notifications, ...)."""
        items = await self.backend.query(keys.inv(inv_id))
        return load_partition(items), items

    async def with_pending(self, inv: rec.Invocation, version: int, entries: list[Entry]) -> Loaded:
        """An invocation's view from memory (record, journal) with the notifications stored
        for it meanwhile: what an attempt in flight here needs instead of its partition."""
        loaded = Loaded(inv, version, entries)
        pk = keys.inv(inv.id)
        watch = self._watch
        if watch is not None and watch.quiet(pk):
            return loaded
        mark = watch.mark() if watch is not None else 0
        notes = await self.backend.query(pk, keys.NOTIFY_PREFIX)
        if watch is not None:
            watch.read(pk, mark, found=bool(notes))
        add_pending(loaded, notes)
        return loaded

    async def state(self, service: str, key: str) -> tuple[dict[str, bytes], int]:
        """The K/V state of an object or workflow instance, and its version (0: none)."""
        item = await self.backend.get(keys.obj(service, key), keys.STATE)
        if item is None:
            return {}, 0
        return dict(_state_decoder.decode(item.value).entries), item.version
