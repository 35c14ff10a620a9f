"""Read-only access to the records behind the system tables, with a budget per query.

A :class:`StoreReader` serves one query. Every item the backend returns counts against its
budget (``max_items``); a read that would pass it raises :class:`ScanLimitError` before more is
read, so one query never reads more than ``max_items + 1`` items. Reads are narrowed by what the
query's filters allow:

* invocation ids: one ``get`` (or one partition ``query``) per id, never a scan;
* a service name and key: the ``obj/{service}/{key}`` partition directly;
* a service name alone: a scan of the ``obj/{service}/`` key range (SQLite and memory read that
  range only; DynamoDB's ``Scan`` still reads the table, filtered server-side).

Everything else scans the invocation records (``inv/*`` / ``meta``) or the object records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from backends.api import Backend, Item
from invoker import keys
from invoker import records as rec
from invoker.journal import Loaded, load_partition
from invoker.registry_model import DeploymentInfo, ServiceInfo
from invoker.store import decode_invocation, decode_lock, decode_promise
from restate_lambda.clock import Clock, SystemClock
from restate_lambda.protocol.ids import is_invocation_id

#: Default budget of items one query may read from the store.
DEFAULT_MAX_ITEMS = 10_000
#: Most (service, key) pairs one query may name (``IN`` lists multiply).
MAX_KEY_PAIRS = 1_000


class ScanLimitError(Exception):
    """A query would read more items from the store than its budget allows."""

    def __init__(self, max_items: int, what: str) -> None:
        super().__init__(
            f"the query would read more than {max_items} items from the store (while reading "
            f"{what}); narrow it with `id = '…'`, `service_name = '…' AND service_key = '…'` "
            "(`target_service_name`/`target_service_key` on sys_invocation), or raise "
            "RESTATE_LAMBDA_QUERY_MAX_ITEMS"
        )
        self.max_items = max_items


@dataclass(frozen=True, slots=True)
class ObjectItem:
    """A record of one virtual object or workflow instance (``obj/{service}/{key}``)."""

    service: str
    key: str
    item: Item


def split_object_pk(pk: str) -> tuple[str, str] | None:
    """``(service, key)`` of an ``obj/{service}/{key}`` partition key, else None."""
    if not pk.startswith("obj/"):
        return None
    service, sep, key = pk[4:].partition("/")
    return (service, key) if sep else None


class RegistryView(Protocol):
    """The registry reads the system tables need (:class:`invoker.registry.Registry`)."""

    async def refresh_if_stale(self, max_age_ms: int = 2000) -> bool:
        """Reload the registry if another process may have changed it."""
        ...

    def services(self) -> list[ServiceInfo]:
        """Latest revision of every service."""
        ...

    def deployments(self) -> list[DeploymentInfo]:
        """Every deployment."""
        ...


class IntrospectionSource:
    """What the system tables are read from: the store and the registry of one engine."""

    def __init__(
        self, backend: Backend, registry: RegistryView, clock: Clock | None = None
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.clock: Clock = clock or SystemClock()

    async def services(self) -> list[ServiceInfo]:
        """The latest revision of every registered service."""
        await self.registry.refresh_if_stale()
        return self.registry.services()

    async def deployments(self) -> list[DeploymentInfo]:
        """Every registered deployment."""
        await self.registry.refresh_if_stale()
        return self.registry.deployments()

    def reader(self, max_items: int = DEFAULT_MAX_ITEMS) -> StoreReader:
        """A reader for one query, allowed to read ``max_items`` items."""
        return StoreReader(self.backend, max_items, self.clock.now_ms())


class StoreReader:
    """The store reads of one query, counted against its budget, as of one instant.

    An invocation whose retention ended by ``now_ms`` is gone, as it is to clients
    (:func:`invoker.records.past_retention`): its record and journal are left out even while
    the store still holds them (DynamoDB deletes expired items within days)."""

    def __init__(self, backend: Backend, max_items: int, now_ms: int | None = None) -> None:
        self.backend = backend
        self.max_items = max_items
        self.now_ms = now_ms
        self.items_read = 0
        self._metas: list[rec.Invocation] | None = None

    def _gone(self, inv: rec.Invocation) -> bool:
        return self.now_ms is not None and rec.past_retention(inv, self.now_ms)

    # -- budget ------------------------------------------------------------------------------

    def _remaining(self) -> int:
        return max(self.max_items - self.items_read, 0)

    def _count(self, n: int, what: str) -> None:
        self.items_read += n
        if self.items_read > self.max_items:
            raise ScanLimitError(self.max_items, what)

    async def _get(self, pk: str, sk: str, what: str) -> Item | None:
        self._count(0, what)
        try:
            item = await self.backend.get(pk, sk)
        except ValueError:  # a key the store cannot hold (e.g. a lone surrogate): no such item
            return None
        self._count(1 if item is not None else 0, what)
        return item

    async def _query(self, pk: str, prefix: str, what: str) -> list[Item]:
        try:
            items = await self.backend.query(pk, prefix, limit=self._remaining() + 1)
        except ValueError:
            return []
        self._count(len(items), what)
        return items

    async def _scan(self, pk_prefix: str, sk: str, what: str) -> list[Item]:
        try:
            items = await self.backend.scan(pk_prefix, sk, limit=self._remaining() + 1)
        except ValueError:
            return []
        self._count(len(items), what)
        return items

    # -- invocations -------------------------------------------------------------------------

    async def invocations(
        self, ids: Iterable[str] | None = None, *, fetch: int | None = None
    ) -> list[rec.Invocation]:
        """Invocation records: those of ``ids`` (None: all of them; at most ``fetch``)."""
        if ids is not None:
            out = []
            for inv_id in sorted(set(ids)):
                if not is_invocation_id(inv_id):
                    continue
                item = await self._get(keys.inv(inv_id), keys.META, "invocations")
                if item is not None:
                    inv = decode_invocation(item.value)
                    if not self._gone(inv):
                        out.append(inv)
            return out
        if self._metas is None:
            if fetch is not None and fetch <= self._remaining():
                items = await self.backend.scan(keys.INV_PREFIX, keys.META, limit=fetch)
                self._count(len(items), "invocations")
                invs = [decode_invocation(i.value) for i in items]
                kept = [inv for inv in invs if not self._gone(inv)]
                if len(kept) == len(invs) or len(items) < fetch:
                    return kept
                # Some of the first ``fetch`` are gone: the limit needs the whole scan.
            items = await self._scan(keys.INV_PREFIX, keys.META, "invocations")
            decoded = (decode_invocation(i.value) for i in items)
            self._metas = [inv for inv in decoded if not self._gone(inv)]
        return self._metas

    async def partitions(self, ids: Iterable[str] | None = None) -> list[Loaded]:
        """Everything each invocation owns (record, journal, pending notifications)."""
        if ids is None:
            ids = [inv.id for inv in await self.invocations()]
        out = []
        for inv_id in sorted(set(ids)):
            if not is_invocation_id(inv_id):
                continue
            loaded = load_partition(await self._query(keys.inv(inv_id), "", "journals"))
            if loaded is not None and not self._gone(loaded.invocation):
                out.append(loaded)
        return out

    # -- virtual objects and workflows ---------------------------------------------------------

    async def objects(
        self, sk: str, services: Iterable[str] | None, object_keys: Iterable[str] | None
    ) -> list[ObjectItem]:
        """The ``sk`` record (``state`` or ``lock``) of the objects the filters allow."""
        what = f"{sk} records"
        found: list[Item] = []
        if services is not None and object_keys is not None:
            pairs = [(s, k) for s in sorted(set(services)) for k in sorted(set(object_keys))]
            if len(pairs) > MAX_KEY_PAIRS:
                raise ScanLimitError(self.max_items, f"{len(pairs)} (service, key) pairs")
            for service, key in pairs:
                item = await self._get(keys.obj(service, key), sk, what)
                if item is not None:
                    found.append(item)
        elif services is not None:
            for service in sorted(set(services)):
                if "/" not in service:
                    found += await self._scan(f"obj/{service}/", sk, what)
        else:
            found = await self._scan("obj/", sk, what)
        out = []
        for item in found:
            parts = split_object_pk(item.pk)
            if parts is not None:
                out.append(ObjectItem(parts[0], parts[1], item))
        return out

    async def locks(
        self, services: Iterable[str] | None, object_keys: Iterable[str] | None
    ) -> list[tuple[ObjectItem, rec.LockRecord]]:
        """Lock records (holder and inbox counters) of virtual object keys."""
        return [
            (o, decode_lock(o.item.value))
            for o in await self.objects(keys.LOCK, services, object_keys)
        ]

    async def inbox(
        self, services: Iterable[str] | None, object_keys: Iterable[str] | None
    ) -> list[tuple[str, str, int, str]]:
        """Queued invocations as ``(service, key, sequence number, invocation id)``."""
        out = []
        for obj, lock in await self.locks(services, object_keys):
            if lock.head >= lock.tail:
                continue
            for item in await self._query(obj.item.pk, keys.INBOX_PREFIX, "inboxes"):
                seq = int(item.sk[len(keys.INBOX_PREFIX) :])
                out.append((obj.service, obj.key, seq, item.value.decode()))
        return out

    async def promises(
        self, services: Iterable[str] | None, object_keys: Iterable[str] | None
    ) -> list[tuple[str, str, str, rec.PromiseRecord]]:
        """Workflow promises as ``(service, key, name, record)``."""
        if services is not None and object_keys is not None:
            pairs = {(s, k) for s in set(services) for k in set(object_keys)}
            if len(pairs) > MAX_KEY_PAIRS:
                raise ScanLimitError(self.max_items, f"{len(pairs)} (service, key) pairs")
        else:
            wanted = None if services is None else set(services)
            pairs = {
                (inv.service, inv.key)
                for inv in await self.invocations()
                if inv.handler_kind == "workflow"
                and inv.key is not None
                and (wanted is None or inv.service in wanted)
            }
        out = []
        for service, key in sorted(pairs):
            for item in await self._query(keys.obj(service, key), keys.PROMISE_PREFIX, "promises"):
                name = item.sk[len(keys.PROMISE_PREFIX) :]
                out.append((service, key, name, decode_promise(item.value)))
        return out
