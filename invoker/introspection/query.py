"""Answer SQL over the system tables with DataFusion, reading only what the filters allow.

A query runs in three steps:

1. plan it over *empty* tables with restate-server's schemas (catalog ``restate``, schema
   ``public``, ``information_schema`` on), so that a bad query fails before any read;
2. find what each scan's filters allow (:mod:`invoker.introspection.pushdown`) and read those
   records (:mod:`invoker.introspection.source`, within the query's item budget);
3. register the rows as Arrow tables and run the query; stop past ``max_rows`` result rows.

Only reads: DDL, DML (``COPY``, ``INSERT``) and ``SET`` statements are refused, and URL tables
(``SELECT * FROM '/path'``) stay off, so a query can reach no file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions

from invoker import keys
from invoker import records as rec
from invoker.introspection import keyed_rows, registry_rows, rows
from invoker.introspection.journal_rows import journal_event_rows, journal_rows
from invoker.introspection.pushdown import Scan, common, keep, scans, strings
from invoker.introspection.schema import TABLES, schema
from invoker.introspection.source import (
    DEFAULT_MAX_ITEMS,
    IntrospectionSource,
    ScanLimitError,
    StoreReader,
)

Row = dict[str, Any]
#: Default most rows in one query's result.
DEFAULT_MAX_ROWS = 100_000


class QueryError(Exception):
    """A query that cannot be answered: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one query may use.

    Attributes:
        max_items: items read from the store (``RESTATE_LAMBDA_QUERY_MAX_ITEMS``).
        max_rows: rows in the result (``RESTATE_LAMBDA_QUERY_MAX_ROWS``).
        memory_bytes: DataFusion's memory pool (sorts, joins, aggregations).
    """

    max_items: int = DEFAULT_MAX_ITEMS
    max_rows: int = DEFAULT_MAX_ROWS
    memory_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_env(cls) -> QueryLimits:
        """Limits from ``RESTATE_LAMBDA_QUERY_MAX_ITEMS`` / ``_MAX_ROWS`` (else defaults)."""

        def number(name: str, default: int) -> int:
            raw = os.environ.get(name)
            if not raw:
                return default
            try:
                return max(int(raw), 1)
            except ValueError:
                return default

        return cls(
            max_items=number("RESTATE_LAMBDA_QUERY_MAX_ITEMS", DEFAULT_MAX_ITEMS),
            max_rows=number("RESTATE_LAMBDA_QUERY_MAX_ROWS", DEFAULT_MAX_ROWS),
        )


_READ_ONLY = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


def _context(limits: QueryLimits) -> SessionContext:
    config = (
        SessionConfig()
        .with_information_schema(True)
        .with_default_catalog_and_schema("restate", "public")
        .with_batch_size(1024)
        .with_target_partitions(1)
    )
    runtime = RuntimeEnvBuilder().with_greedy_memory_pool(limits.memory_bytes)
    ctx = SessionContext(config, runtime)
    for table in TABLES:
        _register(ctx, table, [])
    return ctx


def _register(ctx: SessionContext, table: str, data: list[Row]) -> None:
    if ctx.table_exist(table):
        ctx.deregister_table(table)
    arrow_schema = schema(table)
    batches = pa.Table.from_pylist(data, schema=arrow_schema).to_batches()
    ctx.register_record_batches(
        table, [batches or [pa.RecordBatch.from_pylist([], schema=arrow_schema)]]
    )


def _datafusion_error(exc: Exception) -> QueryError:
    text = str(exc).strip() or type(exc).__name__
    if not text.lower().startswith("datafusion error"):
        text = f"Datafusion error: {text}"
    return QueryError(400, text)


class _Tables:
    """Rows of the tables one query scans, read through one :class:`StoreReader`."""

    def __init__(self, source: IntrospectionSource, reader: StoreReader) -> None:
        self.source = source
        self.reader = reader
        self.servers: dict[str, str] = {}
        self.kinds: dict[tuple[str, str], tuple[str, str | None]] = {}

    async def load_registry(self) -> None:
        for dep in await self.source.deployments():
            if dep.sdk_version:
                self.servers[dep.id] = dep.sdk_version
        for svc in await self.source.services():
            for handler in svc.handlers.values():
                self.kinds[(svc.name, handler.name)] = (svc.kind, handler.kind)

    async def _invocations(self, scan_list: list[Scan]) -> list[rec.Invocation]:
        ids = strings(common(scan_list, "id"))
        fetch = scan_list[0].fetch if len(scan_list) == 1 and ids is None else None
        return await self.reader.invocations(ids, fetch=fetch)

    async def rows(self, table: str, scan_list: list[Scan]) -> list[Row]:
        """The rows of ``table`` the scans can see."""
        builders: dict[str, Callable[[list[Scan]], Coroutine[Any, Any, list[Row]]]] = {
            "sys_invocation": self._sys_invocation,
            "sys_invocation_status": self._sys_invocation_status,
            "sys_invocation_state": self._sys_invocation_state,
            "sys_journal": self._sys_journal,
            "sys_journal_events": self._sys_journal_events,
            "state": self._state,
            "sys_keyed_service_status": self._keyed_status,
            "sys_inbox": self._inbox,
            "sys_promise": self._promise,
            "sys_service": self._services,
            "sys_deployment": self._deployments,
        }
        return keep(await builders[table](scan_list), scan_list)

    async def _sys_invocation(self, scan_list: list[Scan]) -> list[Row]:
        invs = await self._invocations(scan_list)
        out = [rows.invocation_row(inv, self.servers) for inv in invs]
        by_id = {inv.id: inv for inv in invs}
        missing = {inv.parent_id for inv in invs if inv.parent_id and inv.parent_id not in by_id}
        if missing:
            by_id.update({p.id: p for p in await self.reader.invocations(missing)})
        rows.fill_invoked_by(out, by_id)
        return out

    async def _sys_invocation_status(self, scan_list: list[Scan]) -> list[Row]:
        return [rows.invocation_status_row(inv) for inv in await self._invocations(scan_list)]

    async def _sys_invocation_state(self, scan_list: list[Scan]) -> list[Row]:
        out = []
        for inv in await self._invocations(scan_list):
            row = rows.invocation_state_row(inv, self.servers)
            if row is not None:
                out.append(row)
        return out

    def _kind(self, service: str, handler: str) -> tuple[str, str | None] | None:
        return self.kinds.get((service, handler))

    async def _sys_journal(self, scan_list: list[Scan]) -> list[Row]:
        out: list[Row] = []
        for loaded in await self.reader.partitions(strings(common(scan_list, "id"))):
            out += journal_rows(loaded, self._kind)
        return out

    async def _sys_journal_events(self, scan_list: list[Scan]) -> list[Row]:
        out: list[Row] = []
        for loaded in await self.reader.partitions(strings(common(scan_list, "id"))):
            out += journal_event_rows(loaded)
        return out

    def _object_filters(self, scan_list: list[Scan]) -> tuple[list[str] | None, list[str] | None]:
        return (
            strings(common(scan_list, "service_name")),
            strings(common(scan_list, "service_key")),
        )

    async def _state(self, scan_list: list[Scan]) -> list[Row]:
        out: list[Row] = []
        for obj in await self.reader.objects(keys.STATE, *self._object_filters(scan_list)):
            out += keyed_rows.state_rows(obj)
        return out

    async def _keyed_status(self, scan_list: list[Scan]) -> list[Row]:
        out = []
        for obj in await self.reader.objects(keys.LOCK, *self._object_filters(scan_list)):
            row = keyed_rows.keyed_status_row(obj)
            if row is not None:
                out.append(row)
        return out

    async def _inbox(self, scan_list: list[Scan]) -> list[Row]:
        found = await self.reader.inbox(*self._object_filters(scan_list))
        return [keyed_rows.inbox_row(*entry) for entry in found]

    async def _promise(self, scan_list: list[Scan]) -> list[Row]:
        found = await self.reader.promises(*self._object_filters(scan_list))
        return [keyed_rows.promise_row(*entry) for entry in found]

    async def _services(self, scan_list: list[Scan]) -> list[Row]:
        return [registry_rows.service_row(s) for s in await self.source.services()]

    async def _deployments(self, scan_list: list[Scan]) -> list[Row]:
        return [registry_rows.deployment_row(d) for d in await self.source.deployments()]


def _collect(ctx: SessionContext, sql: str, max_rows: int) -> pa.Table:
    df = ctx.sql_with_options(sql, _READ_ONLY)
    batches: list[pa.RecordBatch] = []
    count = 0
    for batch in df.execute_stream():
        arrow = batch.to_pyarrow()
        count += arrow.num_rows
        if count > max_rows:
            raise QueryError(
                400,
                f"the query returns more than {max_rows} rows; add a LIMIT or raise "
                "RESTATE_LAMBDA_QUERY_MAX_ROWS",
            )
        batches.append(arrow)
    return pa.Table.from_batches(batches, schema=df.schema())


async def run_query(
    source: IntrospectionSource, sql: str, limits: QueryLimits | None = None
) -> pa.Table:
    """The result of ``sql`` over the system tables.

    Raises:
        QueryError: a bad query (400), a query over its limits (400).
    """
    limits = limits or QueryLimits()
    ctx = _context(limits)
    try:
        plan = await asyncio.to_thread(
            lambda: ctx.sql_with_options(sql, _READ_ONLY).optimized_logical_plan()
        )
    except Exception as exc:
        raise _datafusion_error(exc) from exc
    by_table: dict[str, list[Scan]] = {}
    for scan in scans(plan, frozenset(TABLES)):
        by_table.setdefault(scan.table, []).append(scan)
    tables = _Tables(source, source.reader(limits.max_items))
    try:
        if by_table:
            await tables.load_registry()
        for table, scan_list in by_table.items():
            data = await tables.rows(table, scan_list)
            await asyncio.to_thread(_register, ctx, table, data)
    except ScanLimitError as exc:
        raise QueryError(400, str(exc)) from exc
    try:
        return await asyncio.to_thread(_collect, ctx, sql, limits.max_rows)
    except QueryError:
        raise
    except Exception as exc:
        raise _datafusion_error(exc) from exc
