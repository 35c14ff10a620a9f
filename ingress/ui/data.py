"""What the web UI shows, read from Restate's system tables.

With the ``sql`` extra installed, every read is a SQL query over the system tables (the same
DataFusion engine and pushdown as ``POST /query``: an invocation's page reads that invocation's
partition only; the state of one key reads that key), and the page shows the query so it can
be run again with ``restate sql``. Without it, the same rows are built directly by
:mod:`invoker.introspection`'s row builders, filtered here. Either way reads stay within
``RESTATE_LAMBDA_QUERY_MAX_ITEMS``.

Filters come from a page's query string; only validated values reach a query, and every string
is quoted as an SQL literal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingress.ids import IdError
from ingress.ids import check_invocation_id as check_id
from ingress.ui.errors import Row, UiError
from invoker.api import EngineApi

#: Status filter values: Restate's statuses, plus ``active`` (not completed) and ``failed``
#: (the last attempt failed, or completed with a failure).
STATUSES = (
    "pending",
    "scheduled",
    "ready",
    "running",
    "backing-off",
    "suspended",
    "paused",
    "completed",
)
STATUS_FILTERS = ("", "active", "failed", *STATUSES)
#: ``since`` choices: created within the last …
SINCE = {"5m": 5, "1h": 60, "24h": 24 * 60, "7d": 7 * 24 * 60}
MAX_LIMIT = 500
_TEXT_MAX = 1000
_INVOCATION_COLUMNS = (
    "id, target, target_service_name, target_service_key, target_handler_name, "
    "target_service_ty, status, created_at, modified_at, retry_count, next_retry_at, "
    "last_failure, completion_result, completion_failure, idempotency_key, invoked_by_id"
)


def sql_string(value: str) -> str:
    """``value`` as an SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if len(value) > _TEXT_MAX or "\x00" in value:
        raise UiError(400, f"the filter '{name}' is not a valid value")
    return value


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 date or date-time; naive ones are UTC."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UiError(
            400, f"the filter '{name}' is not an ISO 8601 time (e.g. 2026-08-22T10:00Z)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class InvocationFilter:
    """The invocations page's filters."""

    status: str = ""
    service: str | None = None
    handler: str | None = None
    key: str | None = None
    since: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> InvocationFilter:
        """Parse a page's query string (UiError 400 on a bad value)."""
        status = (params.get("status") or "").strip()
        if status not in STATUS_FILTERS:
            raise UiError(400, f"unknown status filter {status!r}")
        since = (params.get("since") or "").strip()
        if since and since not in SINCE:
            raise UiError(400, f"unknown 'since' {since!r}: use one of {', '.join(SINCE)}")
        raw_limit = (params.get("limit") or "50").strip()
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise UiError(400, f"'limit' must be a number from 1 to {MAX_LIMIT}")
        start, end = _text(params, "from"), _text(params, "to")
        return cls(
            status=status,
            service=_text(params, "service"),
            handler=_text(params, "handler"),
            key=_text(params, "key"),
            since=since,
            created_from=parse_time(start, "from") if start else None,
            created_to=parse_time(end, "to") if end else None,
            limit=int(raw_limit),
        )

    def lower_bound(self, now: datetime) -> datetime | None:
        """The earliest creation time allowed (``since`` and ``from``, the later)."""
        bounds = [b for b in (self.created_from,) if b is not None]
        if self.since:
            bounds.append(now - timedelta(minutes=SINCE[self.since]))
        return max(bounds) if bounds else None

    def where(self, now: datetime) -> str:
        """The SQL condition (``TRUE`` for none)."""
        parts: list[str] = []
        if self.status == "active":
            parts.append("status != 'completed'")
        elif self.status == "failed":
            parts.append("(last_failure IS NOT NULL OR completion_result = 'failure')")
        elif self.status:
            parts.append(f"status = {sql_string(self.status)}")
        for column, value in (
            ("target_service_name", self.service),
            ("target_handler_name", self.handler),
            ("target_service_key", self.key),
        ):
            if value is not None:
                parts.append(f"{column} = {sql_string(value)}")
        low = self.lower_bound(now)
        if low is not None:
            parts.append(f"created_at >= {sql_string(_iso(low))}")
        if self.created_to is not None:
            parts.append(f"created_at < {sql_string(_iso(self.created_to))}")
        return " AND ".join(parts) or "TRUE"

    def matches(self, row: Row, now: datetime) -> bool:
        """The same condition in Python (for rows built without the SQL engine)."""
        status = row.get("status")
        if self.status == "active" and status == "completed":
            return False
        if self.status == "failed" and not (
            row.get("last_failure") or row.get("completion_result") == "failure"
        ):
            return False
        if self.status not in ("", "active", "failed") and status != self.status:
            return False
        for column, value in (
            ("target_service_name", self.service),
            ("target_handler_name", self.handler),
            ("target_service_key", self.key),
        ):
            if value is not None and row.get(column) != value:
                return False
        created = datetime.fromtimestamp(int(row.get("created_at") or 0) / 1000, UTC)
        low = self.lower_bound(now)
        if low is not None and created < low:
            return False
        return self.created_to is None or created < self.created_to


@dataclass(slots=True)
class Page:
    """Rows read for a page, and the SQL that read them (empty without the SQL engine)."""

    rows: list[Row] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


def raw_bytes(value: Any) -> bytes | None:
    """A binary column's value: bytes (row builders) or hex text (JSON rows)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return value.encode()
    return None


def check_invocation_id(value: str) -> str:
    """``value`` if it is an invocation id (UiError 400 otherwise)."""
    try:
        check_id(value)
    except IdError as exc:
        raise UiError(400, f"{value[:80]!r} is not an invocation id (inv_…): {exc}") from exc
    return value


class UiData:
    """The UI's reads over one engine (SQL when available; see the module docstring)."""

    def __init__(self, engine: EngineApi, *, use_sql: bool | None = None) -> None:
        self.engine = engine
        if use_sql is None:
            from ingress.admin_query import sql_available

            use_sql = sql_available()
        self.use_sql = use_sql

    async def _sql(self, page: Page, query: str) -> list[Row]:
        from invoker.introspection.encoding import to_json
        from invoker.introspection.query import QueryError, QueryLimits, run_query

        page.queries.append(query)
        try:
            table = await run_query(self.engine.introspection(), query, QueryLimits.from_env())
        except QueryError as exc:
            raise UiError(exc.status, exc.message) from exc
        rows: list[Row] = json.loads(to_json(table))["rows"]
        return rows

    async def invocations(self, f: InvocationFilter, now: datetime) -> Page:
        """Invocations matching ``f``, newest first; one more row than ``f.limit`` tells the
        page there are more."""
        page = Page()
        if self.use_sql:
            page.rows = await self._sql(
                page,
                f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation WHERE {f.where(now)} "
                f"ORDER BY created_at DESC, id LIMIT {f.limit + 1}",
            )
            return page
        from ingress.ui.fallback import invocation_rows

        rows = [r for r in await invocation_rows(self.engine, None) if f.matches(r, now)]
        rows.sort(key=lambda r: (-int(r.get("created_at") or 0), r["id"]))
        page.rows = rows[: f.limit + 1]
        return page

    async def invocation(self, inv_id: str) -> tuple[Row | None, list[Row], list[Row], Page]:
        """One invocation: its ``sys_invocation`` row (None if unknown), ``sys_journal`` rows
        and ``sys_journal_events`` rows."""
        check_invocation_id(inv_id)
        page = Page()
        literal = sql_string(inv_id)
        if self.use_sql:
            found = await self._sql(page, f"SELECT * FROM sys_invocation WHERE id = {literal}")
            if not found:
                return None, [], [], page
            journal = await self._sql(
                page,
                "SELECT index, entry_type, name, completed, invoked_id, invoked_target, "
                "sleep_wakeup_at, promise_name, raw_length, entry_json, appended_at "
                f"FROM sys_journal WHERE id = {literal} ORDER BY index",
            )
            events = await self._sql(
                page,
                "SELECT after_journal_entry_index, appended_at, event_type, event_json "
                f"FROM sys_journal_events WHERE id = {literal}",
            )
            return found[0], journal, events, page
        from ingress.ui.fallback import journal_rows_of

        row, journal, events = await journal_rows_of(self.engine, inv_id)
        return row, journal, events, page

    async def state(self, service: str, key: str) -> tuple[list[Row], Row, Page]:
        """``state`` rows of one key, and who holds the key / waits for it (``holder``,
        ``inbox``)."""
        page = Page()
        where = f"service_name = {sql_string(service)} AND service_key = {sql_string(key)}"
        if self.use_sql:
            rows = await self._sql(
                page,
                f"SELECT key, value_utf8, value, value_length FROM state WHERE {where} "
                "ORDER BY key",
            )
            holders = await self._sql(
                page, f"SELECT invocation_id FROM sys_keyed_service_status WHERE {where}"
            )
            inbox = await self._sql(
                page,
                f"SELECT id, sequence_number FROM sys_inbox WHERE {where} ORDER BY sequence_number",
            )
        else:
            from ingress.ui.fallback import keyed_rows_of

            rows, holders, inbox = await keyed_rows_of(self.engine, service, key)
        about: Row = {
            "holder": holders[0]["invocation_id"] if holders else None,
            "inbox": [r["id"] for r in inbox],
        }
        return rows, about, page

    async def keys(self, service: str) -> Page:
        """The keys of ``service`` that have state, with their number of entries."""
        page = Page()
        if self.use_sql:
            page.rows = await self._sql(
                page,
                "SELECT service_key, COUNT(*) AS entries FROM state "
                f"WHERE service_name = {sql_string(service)} "
                "GROUP BY service_key ORDER BY service_key LIMIT 1000",
            )
            return page
        from ingress.ui.fallback import state_keys

        page.rows = await state_keys(self.engine, service)
        return page
