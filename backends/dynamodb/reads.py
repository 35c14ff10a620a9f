"""The read paths, as blocking functions of a :class:`~backends.dynamodb.table.TableClient`.

Every read is strongly consistent except the due index (a GSI, which lags the table; its
candidates are re-read with a consistent ``BatchGetItem``):

=================  =====================================================================
get                ``GetItem`` with ``ConsistentRead``
query              ``Query`` with ``ConsistentRead``, paginated; a prefix becomes a
                   ``BETWEEN`` range in stored-key space (see :mod:`backends.dynamodb.schema`)
due (per shard)    ``Query`` on the ``due`` index: the first keys by ``d``, plus all ties
batch get          consistent ``BatchGetItem`` of up to 100 keys a request
scan               a consistent ``Scan`` filtered on ``sk`` (admin listings only)
=================  =====================================================================

Throttled ``UnprocessedKeys`` are retried here with jittered backoff. An item whose blob was
deleted by a concurrent overwrite is re-read (:meth:`~backends.dynamodb.table.TableClient.decode`);
in a query, scan or due listing it then shows its newer state, or is left out if it was deleted.
"""

from __future__ import annotations

import random
import time
from typing import Any

from backends._batch import prefix_upper_bound
from backends.api import Item
from backends.dynamodb.schema import DUE_INDEX, decode_key, encode_key, item_key
from backends.dynamodb.table import TableClient


def get_item(t: TableClient, pk: str, sk: str) -> Item | None:
    """The item at ``(pk, sk)``, or ``None`` (consistent ``GetItem``)."""
    raw = t.call("get_item", TableName=t.name, Key=item_key(pk, sk), ConsistentRead=True).get(
        "Item"
    )
    return None if raw is None else t.decode(raw)


def query_items(
    t: TableClient, pk: str, prefix: str, after: str | None, limit: int | None, reverse: bool
) -> list[Item]:
    """Items of ``pk`` whose sort key starts with ``prefix``, after ``after``, in order."""
    # The range in stored-key space: lo (inclusive unless lo_open) .. hi (exclusive).
    lo: str | None = None
    lo_open = False
    hi: str | None = None
    if prefix:
        lo = encode_key(prefix)
        upper = prefix_upper_bound(prefix)
        hi = None if upper is None else encode_key(upper)
    if after is not None:
        stored_after = encode_key(after)
        if reverse:
            if hi is None or stored_after < hi:
                hi = stored_after
        elif lo is None or stored_after >= lo:
            lo, lo_open = stored_after, True
    if lo is not None and hi is not None and lo >= hi:
        return []
    values: dict[str, Any] = {":pk": {"S": encode_key(pk)}}
    condition = "pk = :pk"
    if lo is not None and hi is not None:
        condition += " AND sk BETWEEN :lo AND :hi"  # inclusive: endpoints dropped below
        values[":lo"] = {"S": lo}
        values[":hi"] = {"S": hi}
    elif lo is not None:
        condition += " AND sk > :lo" if lo_open else " AND sk >= :lo"
        values[":lo"] = {"S": lo}
    elif hi is not None:
        condition += " AND sk < :hi"
        values[":hi"] = {"S": hi}
    request: dict[str, Any] = {
        "TableName": t.name,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
        "ScanIndexForward": not reverse,
    }
    out: list[dict[str, Any]] = []
    while True:
        if limit is not None:
            request["Limit"] = min(limit - len(out) + 2, 1000)
        page = t.call("query", **request)
        for raw in page.get("Items", []):
            sk = raw["sk"]["S"]
            if sk == hi or (lo_open and sk == lo):
                continue
            out.append(raw)
        more = page.get("LastEvaluatedKey")
        if more is None or (limit is not None and len(out) >= limit):
            break
        request["ExclusiveStartKey"] = more
    if limit is not None:
        out = out[:limit]
    return _decode_all(t, out)


def due_candidates(
    t: TableClient, shard: str, until_ms: int, limit: int
) -> list[tuple[int, str, str]]:
    """The first ``limit`` keys of one shard by ``d``, plus every tie of the last one."""
    request: dict[str, Any] = {
        "TableName": t.name,
        "IndexName": DUE_INDEX,
        "KeyConditionExpression": "ds = :ds AND d <= :until",
        "ExpressionAttributeValues": {":ds": {"S": shard}, ":until": {"N": str(until_ms)}},
        "Limit": min(limit, 1000),
    }
    rows: list[tuple[int, str, str]] = []
    while True:
        page = t.call("query", **request)
        rows += [
            (int(r["d"]["N"]), decode_key(r["pk"]["S"]), decode_key(r["sk"]["S"]))
            for r in page.get("Items", [])
        ]
        more = page.get("LastEvaluatedKey")
        if more is None or (len(rows) >= limit and rows[-1][0] > rows[limit - 1][0]):
            break
        request["ExclusiveStartKey"] = more
    if len(rows) > limit:
        cut = rows[limit - 1][0]
        rows = [r for r in rows if r[0] <= cut]
    return rows


def batch_get(t: TableClient, keys: list[tuple[str, str]]) -> list[Item]:
    """Consistent ``BatchGetItem`` of ``keys`` (missing ones are left out), any order."""
    out: list[Item] = []
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {
            t.name: {
                "Keys": [item_key(pk, sk) for pk, sk in keys[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        delay = 0.01
        while pending:
            page = t.call("batch_get_item", RequestItems=pending)
            out += _decode_all(t, page.get("Responses", {}).get(t.name, []))
            pending = page.get("UnprocessedKeys") or {}
            if pending:
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)
    return out


def scan_items(t: TableClient, pk_prefix: str, sk: str, limit: int | None) -> list[Item]:
    """Items whose pk starts with ``pk_prefix`` and whose sort key is ``sk``, by pk."""
    values: dict[str, Any] = {":sk": {"S": encode_key(sk)}}
    condition = "sk = :sk"
    if pk_prefix:
        condition += " AND begins_with(pk, :pkp)"
        values[":pkp"] = {"S": encode_key(pk_prefix)}
    request: dict[str, Any] = {
        "TableName": t.name,
        "FilterExpression": condition,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }
    raws: list[dict[str, Any]] = []
    while True:
        page = t.call("scan", **request)
        raws += page.get("Items", [])
        more = page.get("LastEvaluatedKey")
        if more is None:
            break
        request["ExclusiveStartKey"] = more
    raws.sort(key=lambda r: decode_key(r["pk"]["S"]))
    if limit is not None:
        raws = raws[:limit]
    return _decode_all(t, raws)


def _decode_all(t: TableClient, raws: list[dict[str, Any]]) -> list[Item]:
    """Decode ``raws``; an item deleted while its blob was fetched is left out."""
    items = [t.decode(raw) for raw in raws]
    return [item for item in items if item is not None]
