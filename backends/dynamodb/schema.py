"""The DynamoDB table's layout: its definition, the attributes of an item, and key encoding.

**Table.** One table (definition: :func:`table_spec`; ``infra/provision.py`` creates it and
renders it for CloudFormation), on-demand billing:

=====  ====  ======================================================================
attr   type  meaning
=====  ====  ======================================================================
pk     S     partition key: the contract's ``pk`` (see *Keys* below)
sk     S     sort key: the contract's ``sk``
v      N     version (>= 1)
b      B     the value, inline (absent when offloaded)
r      S     the S3 key of the offloaded value, ``blobs/{sha256}.{nonce}`` (instead of ``b``)
d      N     ``due_ms``, only on items that have one
ds     S     due shard ``due#{crc32(pk, sk) % DUE_SHARDS}``, present exactly when ``d`` is
xt     N     ``Put.expires_ms`` in epoch seconds (rounded up): the table's TTL attribute
=====  ====  ======================================================================

**Keys.** DynamoDB compares string keys as UTF-8 bytes, which is the contract's order, but it
rejects empty strings in key attributes. A key that is empty or starts with ``U+0000`` is
therefore stored with one ``U+0000`` in front (``"" -> "\\0"``, ``"\\0x" -> "\\0\\0x"``); every
other key is stored as is. That mapping preserves order and prefixes, so everything the engine
writes (``inv/...``, ``meta``, ``j/...``) reads the same in the console and in streams.
Limits: 2048 bytes for a stored ``pk``, 1024 for a stored ``sk`` (DynamoDB's); longer keys raise
``ValueError``.

**Due index.** A sparse GSI named ``due`` (:data:`DUE_INDEX`) with partition key ``ds`` and sort key
``d``; only items with a due time have ``ds``, so only they are indexed. The ``due#0..N-1`` shards
(:data:`DUE_SHARDS`) spread a hot index partition; ``DynamoDbBackend.due`` queries every shard
(in parallel, ``d <= until``), merges them by ``(d, pk, sk)`` -- with all ties at the cut taken from
each shard, so ordering within one ``d`` is exact -- and then reads the chosen items with a
strongly consistent ``BatchGetItem``. Items that are gone or no longer due by the time they are read
(the index lags the table) are dropped and the next candidates read instead.

The projection is ``KEYS_ONLY``: the items with a due time (invocation records, outbox entries,
timers) are the most often rewritten ones, and with ``ALL`` each rewrite would also write its whole
value into the index (twice the write units, and twice the storage). With ``KEYS_ONLY`` the index is
only written when ``d`` itself changes, and ``due()`` pays one consistent ``BatchGetItem`` per poll
-- which also means the items it returns are current, not index-lagged copies.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

#: Name of the sparse global secondary index on due times.
DUE_INDEX: Final = "due"
#: Number of ``ds`` shards of the due index. Part of the table layout: every process sharing a
#: table must use the same value (items in other shards would never be found).
DUE_SHARDS: Final = 4
#: Values longer than this are offloaded to S3 (an item holds 400 KB including keys and names).
INLINE_MAX_BYTES: Final = 350_000
#: Largest value with a bucket configured.
OFFLOADED_MAX_BYTES: Final = 64 * 1024 * 1024
#: What one ``TransactWriteItems`` may carry in total (DynamoDB's limit is 4 MB), with headroom.
TXN_BUDGET_BYTES: Final = 3_800_000
#: Most operations in one batch (``TransactWriteItems`` takes 100).
MAX_BATCH_OPS: Final = 100
#: DynamoDB's key size limits (bytes of the stored, encoded key).
MAX_PK_BYTES: Final = 2048
MAX_SK_BYTES: Final = 1024
#: The table's TTL attribute (epoch seconds): DynamoDB deletes expired items for free.
TTL_ATTRIBUTE: Final = "xt"

_ESC: Final = "\x00"


def table_spec(table_name: str) -> dict[str, Any]:
    """The table's definition as ``CreateTable`` arguments: the one source of truth.

    ``infra.provision`` creates the table from it and renders it as a CloudFormation resource;
    ``DynamoDbBackend.check`` compares a live table against it.
    """
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "ds", "AttributeType": "S"},
            {"AttributeName": "d", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": DUE_INDEX,
                "KeySchema": [
                    {"AttributeName": "ds", "KeyType": "HASH"},
                    {"AttributeName": "d", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


def table_mismatches(table_name: str, description: dict[str, Any]) -> list[str]:
    """Differences between a ``DescribeTable`` result's ``Table`` and :func:`table_spec`.

    Only what the backend depends on is compared: key schema, attribute types of the keys and the
    due index's keys and projection. An empty list means the table is usable.
    """
    spec = table_spec(table_name)
    problems: list[str] = []
    if _keys(description.get("KeySchema", [])) != _keys(spec["KeySchema"]):
        problems.append(
            f"key schema is {_keys(description.get('KeySchema', []))}, "
            f"expected {_keys(spec['KeySchema'])}"
        )
    types = {
        a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])
    }
    for attr in spec["AttributeDefinitions"]:
        if types.get(attr["AttributeName"]) != attr["AttributeType"]:
            problems.append(
                f"attribute {attr['AttributeName']!r} has type "
                f"{types.get(attr['AttributeName'])}, expected {attr['AttributeType']}"
            )
    want = spec["GlobalSecondaryIndexes"][0]
    have = {g["IndexName"]: g for g in description.get("GlobalSecondaryIndexes", [])}
    gsi = have.get(DUE_INDEX)
    if gsi is None:
        problems.append(f"global secondary index {DUE_INDEX!r} is missing")
    else:
        if _keys(gsi.get("KeySchema", [])) != _keys(want["KeySchema"]):
            problems.append(f"index {DUE_INDEX!r} has keys {_keys(gsi.get('KeySchema', []))}")
        projection = gsi.get("Projection", {}).get("ProjectionType")
        if projection not in ("KEYS_ONLY", "ALL"):
            problems.append(f"index {DUE_INDEX!r} projects {projection}, expected KEYS_ONLY")
    return problems


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def encode_key(key: str) -> str:
    """The stored form of a contract key (see *Keys* in the module docstring)."""
    return _ESC + key if not key or key[0] == _ESC else key


def decode_key(stored: str) -> str:
    """Inverse of :func:`encode_key`."""
    return stored[1:] if stored[:1] == _ESC else stored


def item_key(pk: str, sk: str) -> dict[str, Any]:
    """The ``Key`` of an item in DynamoDB's attribute-value form."""
    return {"pk": {"S": encode_key(pk)}, "sk": {"S": encode_key(sk)}}


def due_shard(pk: str, sk: str) -> str:
    """The ``ds`` value of an item with a due time: a stable hash of its key."""
    digest = zlib.crc32(pk.encode() + b"\x00" + sk.encode())
    return f"due#{digest % DUE_SHARDS}"


def check_key_size(pk: str, sk: str) -> None:
    """Raise ``ValueError`` when a stored key exceeds DynamoDB's key size limits."""
    if len(encode_key(pk).encode()) > MAX_PK_BYTES:
        raise ValueError(f"pk is longer than DynamoDB's {MAX_PK_BYTES} bytes: {pk[:40]!r}...")
    if len(encode_key(sk).encode()) > MAX_SK_BYTES:
        raise ValueError(f"sk is longer than DynamoDB's {MAX_SK_BYTES} bytes: {sk[:40]!r}...")
