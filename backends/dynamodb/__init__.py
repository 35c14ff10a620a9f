"""DynamoDB backend: the storage contract on one DynamoDB table, large values offloaded to S3.

One concept per module:

=======================================  ==========================================================
:mod:`backends.dynamodb.schema`          the table's definition, item attributes, key encoding,
                                         the sharded due index, size limits
:mod:`backends.dynamodb.settings`        the ``dynamodb://`` URL and the boto3 clients it names
:mod:`backends.dynamodb.errors`          native failures -> ``ConflictError`` /
                                         ``BackendUnavailableError`` / ``BackendError``
:mod:`backends.dynamodb.table`           one table's blocking calls and item decoding
:mod:`backends.dynamodb.reads`           get, query, due index, batch get, scan
:mod:`backends.dynamodb.writes`          conditional writes and transactions, offloading, deletes
:mod:`backends.dynamodb.blob_refs`       the blob each item referred to when last seen
:mod:`backends.dynamodb.blob_gc`         blob garbage collection: guarantees, the sweep
:mod:`backends.dynamodb.backend`         :class:`DynamoDbBackend`, the async ``Backend``
:mod:`backends.s3_blobs`                 the S3 store of offloaded values
=======================================  ==========================================================

Everything a caller needs is re-exported here (``from backends.dynamodb import DynamoDbBackend``).
Importing this package does not import boto3; constructing clients does.
"""

from backends.dynamodb.backend import DynamoDbBackend
from backends.dynamodb.blob_gc import DEFAULT_GRACE_MS, MIN_GRACE_MS, SweepReport
from backends.dynamodb.schema import (
    DUE_INDEX,
    DUE_SHARDS,
    INLINE_MAX_BYTES,
    MAX_BATCH_OPS,
    MAX_PK_BYTES,
    MAX_SK_BYTES,
    OFFLOADED_MAX_BYTES,
    TTL_ATTRIBUTE,
    TXN_BUDGET_BYTES,
    decode_key,
    due_shard,
    encode_key,
    table_mismatches,
    table_spec,
)
from backends.dynamodb.settings import DynamoDbSettings, make_clients, parse_url

__all__ = [
    "DEFAULT_GRACE_MS",
    "DUE_INDEX",
    "DUE_SHARDS",
    "INLINE_MAX_BYTES",
    "MAX_BATCH_OPS",
    "MAX_PK_BYTES",
    "MAX_SK_BYTES",
    "MIN_GRACE_MS",
    "OFFLOADED_MAX_BYTES",
    "TTL_ATTRIBUTE",
    "TXN_BUDGET_BYTES",
    "DynamoDbBackend",
    "DynamoDbSettings",
    "SweepReport",
    "decode_key",
    "due_shard",
    "encode_key",
    "make_clients",
    "parse_url",
    "table_mismatches",
    "table_spec",
]
