"""The subset of ``POST /query`` the ``restate`` CLI needs without Arrow: ``kv get``."""

from __future__ import annotations

import re
from typing import Any

from invoker.api import EngineApi

_STRING = r"'((?:[^']|'')*)'"
_STATE_QUERY = re.compile(
    r"^\s*select\s+key\s*,\s*value\s+from\s+state\s+where\s+service_name\s*=\s*"
    + _STRING
    + r"\s+and\s+service_key\s*=\s*"
    + _STRING
    + r"\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


class UnsupportedQueryError(ValueError):
    """A query this implementation does not answer."""


async def run_query(engine: EngineApi, query: str) -> dict[str, Any]:
    """``{"rows": [...]}`` for a supported query, else :class:`UnsupportedQueryError`."""
    match = _STATE_QUERY.match(query)
    if match is None:
        raise UnsupportedQueryError(
            "unsupported query: only `select key, value from state where service_name = '…' "
            "and service_key = '…'` is implemented"
        )
    service, key = (group.replace("''", "'") for group in match.groups())
    state = await engine.get_state(service, key)
    return {"rows": [{"key": k, "value": v.hex()} for k, v in sorted(state.items())]}
