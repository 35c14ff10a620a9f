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

**Client library: boto3 on a thread pool, not aioboto3 (issue 11; decision of this revision).**
``benchmarks/dynamodb_client_bench.py`` runs the backend's hot calls both ways in one process
against DynamoDB Local, with one botocore (1.40.61, the version aioboto3 15.5.0 pins) on both
sides. Ratios aioboto3 / boto3 from the run on an idle machine (2 cores, shared with DynamoDB
Local; medians of 3 rounds; x8 and x64 are 8 and 64 concurrent tasks; lower is better except
ops/s)::

    workload  seq latency  seq CPU/op  CPU/op x8  CPU/op x64  ops/s x8  ops/s x64
    put              0.87        0.87       0.78        0.66      1.04       1.37
    get              0.72        0.68       0.64        0.63      1.72       1.51
    txn2             0.84        0.79       0.76        0.68      0.94       1.32
    query10          0.62        0.63       0.66        0.56      1.53       1.70

(Absolute: boto3 2.0--2.9 ms of client CPU per call here, aioboto3 1.3--2.3 ms; at 64 tasks
boto3 236--423 ops/s, aioboto3 311--583 ops/s, bounded by DynamoDB Local on the same cores.)
Cold start, import plus first client in a fresh interpreter: boto3 340--460 ms, aioboto3
400--670 ms (1.17--1.61x, median of 5, over five runs). Earlier runs under heavy machine load gave
CPU/op ratios of 0.57--1.01 and throughput ratios of 0.97--1.60.

So aioboto3 costs less CPU per call in every regime measured (13--44 % less) and lets more calls
through under concurrency, and loses about 100--200 ms on every cold start. It is *not* adopted
in this revision, because switching means: (1) pinning botocore to what aiobotocore supports
(aioboto3 15.5.0 -> botocore 1.40.61, aiobotocore 3.10 -> 1.43.115--117; the project resolves
1.44 today) in the ``aws`` extra and the shared development environment, which needs the whole
team's environment rebuilt at once; (2) an async rewrite of this package and of
:mod:`backends.s3_blobs` (clients bound to an event loop, created lazily per loop); (3) moving
the tests that use moto's in-process ``mock_aws`` (which does not support aiobotocore) to the moto
server or DynamoDB Local. On Lambda, where one environment handles one request at a time and
makes a handful of sequential calls, the saving is about 0.3--1 ms of CPU per call against
100--200 ms per cold start. Recommended follow-up: switch together with the next dependency
refresh, when the environment can be rebuilt for everyone.
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
