"""``POST /query``: SQL over Restate's system tables, answered as restate-server does.

The answer is an Arrow IPC stream (``application/vnd.apache.arrow.stream``) unless the client
asks for JSON (``accept: application/json``: ``{"rows": [...]}``), as restate-server 1.7.12
and the ``restate`` CLI do (the CLI sends ``accept: */*`` for Arrow and ``application/json``
for rows). A bad query is a 400 ``{code, message}``.

The SQL engine (DataFusion, the ``sql`` extra) is imported on the first query, never with this
module. Without it, only the query the CLI's ``kv get`` sends is answered (as JSON); any other
query is a 501 naming the extra.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

from starlette.responses import JSONResponse, Response

from invoker.api import EngineApi

log = logging.getLogger("restate_lambda.admin")

JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"

_STRING = r"'((?:[^']|'')*)'"
_STATE_QUERY = re.compile(
    r"^\s*select\s+key\s*,\s*value\s+from\s+state\s+where\s+service_name\s*=\s*"
    + _STRING
    + r"\s+and\s+service_key\s*=\s*"
    + _STRING
    + r"\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


class QueryHttpError(Exception):
    """A query answered with an error status and ``{code, message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query_error(status: int, message: str) -> JSONResponse:
    """The error body of ``/query`` (also readable by the CLI: ``message``, ``restate_code``)."""
    log.info("query error %d: %s", status, message)
    return JSONResponse(
        {"code": status, "message": message, "restate_code": None}, status_code=status
    )


def wants_json(accept: str | None) -> bool:
    """Whether ``accept`` prefers JSON rows over an Arrow stream (the default)."""
    if not accept:
        return False
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    json_q = weights.get(JSON, 0.0)
    arrow_q = max(weights.get(ARROW_STREAM, 0.0), weights.get("*/*", 0.0) if json_q == 0 else 0)
    return json_q > 0 and json_q >= arrow_q


@cache
def sql_available() -> bool:
    """Whether the ``sql`` extra (datafusion, pyarrow) is installed."""
    try:
        import datafusion  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


async def _fallback(engine: EngineApi, query: str) -> Response:
    """Without the SQL engine: the CLI's ``kv get`` query only."""
    match = _STATE_QUERY.match(query)
    if match is None:
        raise QueryHttpError(
            501,
            "SQL introspection needs the 'sql' extra (pip install 'restate-lambda[sql]'); "
            "without it only `select key, value from state where service_name = '…' and "
            "service_key = '…'` is answered",
        )
    service, key = (group.replace("''", "'") for group in match.groups())
    state = await engine.get_state(service, key)
    rows = [{"key": k, "value": v.hex()} for k, v in sorted(state.items())]
    return JSONResponse({"rows": rows})


async def answer_query(engine: EngineApi, query: str, accept: str | None) -> Response:
    """Run ``query`` and encode its result for ``accept``.

    Raises:
        QueryHttpError: a bad query or one over its limits (400), no SQL engine (501).
    """
    if not sql_available():
        return await _fallback(engine, query)
    from invoker.introspection.encoding import to_ipc, to_json
    from invoker.introspection.query import QueryError, QueryLimits, run_query

    try:
        table: Any = await run_query(engine.introspection(), query, QueryLimits.from_env())
    except QueryError as exc:
        raise QueryHttpError(exc.status, exc.message) from exc
    if wants_json(accept):
        return Response(to_json(table), media_type=JSON)
    return Response(to_ipc(table), media_type=ARROW_STREAM)
