"""The UI's rows without the SQL engine: the system tables' row builders, read directly.

Used when the ``sql`` extra (DataFusion) is not installed. The rows are those the SQL engine
would see (times epoch ms, binary values bytes); the reads follow the same narrowing (one
invocation's partition, one key's records) and the same item budget.
"""

from __future__ import annotations

from typing import Any

from ingress.ui.errors import Row, UiError
from invoker import keys
from invoker.api import EngineApi
from invoker.introspection import keyed_rows, rows
from invoker.introspection.journal_rows import journal_event_rows, journal_rows
from invoker.introspection.source import IntrospectionSource, ScanLimitError, StoreReader


def _reader(source: IntrospectionSource) -> StoreReader:
    import os

    from invoker.introspection.source import DEFAULT_MAX_ITEMS

    raw = os.environ.get("RESTATE_LAMBDA_QUERY_MAX_ITEMS", "")
    budget = int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ITEMS
    return source.reader(budget)


async def _servers(source: IntrospectionSource) -> dict[str, str]:
    return {d.id: d.sdk_version for d in await source.deployments() if d.sdk_version}


async def invocation_rows(engine: EngineApi, ids: list[str] | None) -> list[Row]:
    """``sys_invocation`` rows: of ``ids``, or of every invocation."""
    source = engine.introspection()
    reader = _reader(source)
    try:
        invs = await reader.invocations(ids)
    except ScanLimitError as exc:
        raise UiError(400, str(exc)) from exc
    servers = await _servers(source)
    return [rows.invocation_row(inv, servers) for inv in invs]


async def journal_rows_of(
    engine: EngineApi, inv_id: str
) -> tuple[Row | None, list[Row], list[Row]]:
    """One invocation's ``sys_invocation`` row, ``sys_journal`` and ``sys_journal_events``."""
    source = engine.introspection()
    reader = _reader(source)
    try:
        loaded = await reader.partitions([inv_id])
    except ScanLimitError as exc:
        raise UiError(400, str(exc)) from exc
    if not loaded:
        return None, [], []
    kinds: dict[tuple[str, str], tuple[str, str | None]] = {}
    for svc in await source.services():
        for handler in svc.handlers.values():
            kinds[(svc.name, handler.name)] = (svc.kind, handler.kind)
    row = rows.invocation_row(loaded[0].invocation, await _servers(source))
    journal = journal_rows(loaded[0], lambda s, h: kinds.get((s, h)))
    return row, journal, journal_event_rows(loaded[0])


async def keyed_rows_of(
    engine: EngineApi, service: str, key: str
) -> tuple[list[Row], list[Row], list[Row]]:
    """``state``, ``sys_keyed_service_status`` and ``sys_inbox`` rows of one key."""
    reader = _reader(engine.introspection())
    try:
        state: list[Row] = []
        for obj in await reader.objects(keys.STATE, [service], [key]):
            state += keyed_rows.state_rows(obj)
        holders: list[Row] = []
        for obj in await reader.objects(keys.LOCK, [service], [key]):
            found = keyed_rows.keyed_status_row(obj)
            if found is not None:
                holders.append(found)
        inbox = [keyed_rows.inbox_row(*e) for e in await reader.inbox([service], [key])]
    except ScanLimitError as exc:
        raise UiError(400, str(exc)) from exc
    inbox.sort(key=lambda r: int(r["sequence_number"]))
    return state, holders, inbox


async def state_keys(engine: EngineApi, service: str) -> list[Row]:
    """``(service_key, entries)`` of the keys of ``service`` that have state."""
    reader = _reader(engine.introspection())
    counts: dict[str, Any] = {}
    try:
        for obj in await reader.objects(keys.STATE, [service], None):
            counts[obj.key] = len(keyed_rows.state_rows(obj))
    except ScanLimitError as exc:
        raise UiError(400, str(exc)) from exc
    return [{"service_key": k, "entries": n} for k, n in sorted(counts.items())][:1000]
