"""DynamoDB backend: the storage contract on one DynamoDB table, large values offloaded to S3.

**Table.** One table (definition: :func:`table_spec`; ``infra/provision.py`` creates it and
renders it for CloudFormation), on-demand billing:

=====  ====  ======================================================================
attr   type  meaning
=====  ====  ======================================================================
pk     S     partition key: the contract's ``pk`` (see *Keys* below)
sk     S     sort key: the contract's ``sk``
v      N     version (>= 1)
b      B     the value, inline (absent when offloaded)
r      S     the S3 key of the offloaded value, ``blobs/{sha256}`` (instead of ``b``)
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
(:data:`DUE_SHARDS`) spread a hot index partition; :meth:`DynamoDbBackend.due` queries every shard
(in parallel, ``d <= until``), merges them by ``(d, pk, sk)`` -- with all ties at the cut taken from
each shard, so ordering within one ``d`` is exact -- and then reads the chosen items with a
strongly consistent ``BatchGetItem``. Items that are gone or no longer due by the time they are read
(the index lags the table) are dropped and the next candidates read instead.

The projection is ``KEYS_ONLY``: the items with a due time (invocation records, outbox entries,
timers) are the most often rewritten ones, and with ``ALL`` each rewrite would also write its whole
value into the index (twice the write units, and twice the storage). With ``KEYS_ONLY`` the index is
only written when ``d`` itself changes, and ``due()`` pays one consistent ``BatchGetItem`` per poll
-- which also means the items it returns are current, not index-lagged copies.

**Contract rule -> DynamoDB.**

==============================  ==================================================================
Put ``expect=0``                ``PutItem`` + ``attribute_not_exists(pk)``, ``v = 1``
Put ``expect=n``                ``PutItem`` + ``v = :n``, ``v = n + 1`` (full replace: clears ``d``)
Put ``expect=None``             ``UpdateItem SET v = if_not_exists(v, 0) + 1, b = ... REMOVE ...``
Delete ``expect=None`` / ``0``  ``DeleteItem`` (+ ``attribute_not_exists(pk)`` for 0)
Delete ``expect=n``             one-item ``TransactWriteItems`` (idempotent retries, see below)
Check (alone)                   strongly consistent ``GetItem``, compared in Python
batch of 2..100                 one ``TransactWriteItems`` (Put/Update/Delete/ConditionCheck)
failed condition                ``ConditionalCheckFailedException`` -> ``ConflictError(index=0)``;
                                ``TransactionCanceledException`` -> ``index`` = first
                                ``ConditionalCheckFailed`` in ``CancellationReasons``
``TransactionConflict``         retried here with backoff (nothing was applied), then
                                ``BackendUnavailableError``
throttling, 5xx, timeouts       botocore's standard retries, then ``BackendUnavailableError``
get / query                     ``GetItem`` / ``Query`` with ``ConsistentRead``, paginated
scan                            a consistent ``Scan`` filtered on ``sk`` (admin listings only)
==============================  ==================================================================

**Retries and ambiguity.** botocore retries a request whose response was lost. For a conditional
single-item write that first attempt may have applied, and the retry then fails its own condition.
``TransactWriteItems`` carries an automatic ``ClientRequestToken`` that makes such retries return
the original outcome, which is why deletes with ``expect=n`` (fire-once claims) go through it. For
conditional ``PutItem`` the failure returns the stored item (via
``ReturnValuesOnConditionCheckFailure``) and, only if botocore did retry, a stored item equal to
the one written counts as this write's success. (Another writer storing the byte-identical item
at the same version in that window would also count as a win; values written by distinct engine
instances differ, so this is accepted.)

**Size limits.** An item holds at most 400 KB, a transaction 4 MB in total. Values larger than
``offload_threshold`` (350 000 bytes) are uploaded to S3 first (:mod:`backends.s3_blobs`,
content-addressed and idempotent) and the item stores the reference ``r``; reads fetch and verify
it transparently. A batch whose inline values add up to more than :data:`TXN_BUDGET_BYTES` offloads
its largest values until it fits. Without a bucket ``max_value_bytes`` is the inline limit and
bigger values (or batches) raise :class:`~backends.api.ValueTooLargeError`; with one it is 64 MiB.
Blob garbage collection is a TODO (see :mod:`backends.s3_blobs`).

**Threads.** One boto3 client (thread-safe, connection pool sized to ``max_concurrency``, TCP
keep-alive) shared by a dedicated thread pool of ``max_concurrency`` workers; every call runs there
via ``run_in_executor`` (the default executor is only ``cpu + 4`` threads wide).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

from backends._batch import (
    check_key,
    check_limit,
    check_query,
    prefix_upper_bound,
    validate_batch,
)
from backends.api import (
    BackendError,
    BackendUnavailableError,
    Check,
    ConflictError,
    Delete,
    Item,
    Put,
    ValueTooLargeError,
    WriteOp,
)
from backends.s3_blobs import S3BlobStore

_T = TypeVar("_T")

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

_ESC: Final = "\x00"
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)
_TXN_CONFLICT_ATTEMPTS: Final = 6
#: The table's TTL attribute (epoch seconds): DynamoDB deletes expired items for free.
TTL_ATTRIBUTE: Final = "xt"


# -- layout ------------------------------------------------------------------------------------


def table_spec(table_name: str) -> dict[str, Any]:
    """The table's definition as ``CreateTable`` arguments: the one source of truth.

    ``infra.provision`` creates the table from it and renders it as a CloudFormation resource;
    :meth:`DynamoDbBackend.check` compares a live table against it.
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


def due_shard(pk: str, sk: str) -> str:
    """The ``ds`` value of an item with a due time: a stable hash of its key."""
    digest = zlib.crc32(pk.encode() + b"\x00" + sk.encode())
    return f"due#{digest % DUE_SHARDS}"


def _check_key_size(pk: str, sk: str) -> None:
    if len(encode_key(pk).encode()) > MAX_PK_BYTES:
        raise ValueError(f"pk is longer than DynamoDB's {MAX_PK_BYTES} bytes: {pk[:40]!r}...")
    if len(encode_key(sk).encode()) > MAX_SK_BYTES:
        raise ValueError(f"sk is longer than DynamoDB's {MAX_SK_BYTES} bytes: {sk[:40]!r}...")


# -- URLs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DynamoDbSettings:
    """What a ``dynamodb://`` URL names.

    Attributes:
        table: the table name.
        region: AWS region (``None``: boto3's default chain, e.g. ``AWS_REGION``).
        endpoint_url: DynamoDB endpoint (DynamoDB Local, moto), ``None`` for AWS.
        bucket: S3 bucket for large values, ``None`` to reject them.
        s3_endpoint_url: S3 endpoint, ``None`` for AWS.
    """

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    bucket: str | None = None
    s3_endpoint_url: str | None = None


_URL_OPTIONS = ("region", "endpoint_url", "bucket", "s3_endpoint_url")


def parse_url(rest: str) -> DynamoDbSettings:
    """Parse what follows ``dynamodb://``: ``TABLE[?region=..&endpoint_url=..&bucket=..&...]``.

    Raises:
        ValueError: no or invalid table name, unknown or repeated option, bad endpoint or bucket.
    """
    example = "dynamodb://TABLE?region=us-east-1&bucket=BUCKET"
    parts = urlsplit("dynamodb://" + rest)
    if parts.fragment:
        raise ValueError(f"dynamodb:// takes no fragment, got {rest!r}")
    table = parts.netloc
    if parts.path not in ("", "/"):
        raise ValueError(f"dynamodb:// takes a table name, not a path: {rest!r} ({example})")
    if not table:
        raise ValueError(f"dynamodb:// needs a table name: {example}")
    if not _TABLE_NAME.match(table):
        raise ValueError(
            f"invalid DynamoDB table name {table!r}: 3-255 characters of A-Z a-z 0-9 _ - ."
        )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _URL_OPTIONS:
            raise ValueError(
                f"unknown dynamodb:// option {name!r}; known: {', '.join(_URL_OPTIONS)}"
            )
        if name in options:
            raise ValueError(f"dynamodb:// option {name!r} given twice")
        if not value:
            raise ValueError(f"dynamodb:// option {name!r} is empty")
        options[name] = value
    for name in ("endpoint_url", "s3_endpoint_url"):
        endpoint = options.get(name)
        if endpoint is not None:
            ep = urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ValueError(
                    f"dynamodb:// option {name} must be an http(s) URL, got {endpoint!r}"
                )
    bucket = options.get("bucket")
    if bucket is not None and not _BUCKET_NAME.match(bucket):
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    if "s3_endpoint_url" in options and bucket is None:
        raise ValueError("dynamodb:// option s3_endpoint_url needs bucket=...")
    return DynamoDbSettings(
        table=table,
        region=options.get("region"),
        endpoint_url=options.get("endpoint_url"),
        bucket=bucket,
        s3_endpoint_url=options.get("s3_endpoint_url"),
    )


def make_clients(
    settings: DynamoDbSettings,
    *,
    max_pool_connections: int = 40,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
    max_attempts: int = 4,
) -> tuple[Any, Any | None]:
    """A boto3 DynamoDB client and (with a bucket) an S3 client for ``settings``.

    Raises:
        ValueError: no region given and none configured in the environment.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    session = boto3.session.Session(region_name=settings.region)
    if session.region_name is None:
        raise ValueError("dynamodb:// needs a region: add ?region=... to the URL or set AWS_REGION")
    common: dict[str, Any] = {
        "max_pool_connections": max_pool_connections,
        "tcp_keepalive": True,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"mode": "standard", "total_max_attempts": max_attempts},
    }
    try:
        ddb = session.client(
            "dynamodb", endpoint_url=settings.endpoint_url, config=Config(**common)
        )
        s3 = None
        if settings.bucket is not None:
            s3_config = Config(
                **common,
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            )
            s3 = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=s3_config)
    except NoRegionError as e:  # pragma: no cover - guarded above
        raise ValueError(f"dynamodb:// needs a region: {e}") from e
    return ddb, s3


# -- the backend -------------------------------------------------------------------------------


class _TransactionConflict(Exception):
    """A single-item write collided with an in-flight transaction; nothing was applied."""


class _ConditionFailed(Exception):
    """A ConditionalCheckFailed / TransactionCanceled response, before interpretation."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response.get("Error", {}).get("Message", "condition failed"))
        self.response = response


@dataclass(slots=True)
class _Prepared:
    """One operation in DynamoDB terms."""

    op: WriteOp
    key: dict[str, Any]
    attrs: dict[str, Any] | None = None  # a Put's full item (inline value or blob reference)
    value: bytes | None = None  # a Put's value while it is still inline
    size: int = 0  # estimated item size in bytes


class DynamoDbBackend:
    """A :class:`~backends.api.Backend` on one DynamoDB table (and optionally an S3 bucket).

    Args:
        table: the table name (created by ``infra.provision``).
        client: a boto3 DynamoDB client; made from ``settings`` when omitted.
        s3_client: a boto3 S3 client for ``bucket``.
        bucket: S3 bucket for values above ``offload_threshold``; ``None`` rejects them.
        offload_threshold: values longer than this go to S3 (tests lower it).
        blob_prefix: key prefix of blobs in the bucket.
        max_concurrency: worker threads (and HTTP connections) for DynamoDB calls.
        owns_clients: close the clients in :meth:`close` (pass ``False`` for shared ones).
    """

    max_batch_ops: int = MAX_BATCH_OPS
    supports_expiry: bool = True

    def __init__(
        self,
        table: str,
        *,
        client: Any,
        s3_client: Any | None = None,
        bucket: str | None = None,
        offload_threshold: int = INLINE_MAX_BYTES,
        blob_prefix: str = "blobs/",
        max_concurrency: int = 32,
        endpoint_description: str | None = None,
        owns_clients: bool = True,
    ) -> None:
        """Wrap the clients; no I/O (use :meth:`check` to verify the table is there)."""
        if bucket is not None and s3_client is None:
            raise ValueError("a bucket needs an S3 client")
        if not 0 <= offload_threshold <= INLINE_MAX_BYTES:
            raise ValueError(f"offload_threshold must be within 0..{INLINE_MAX_BYTES}")
        self.table = table
        self.client = client
        self.blobs = None if bucket is None else S3BlobStore(s3_client, bucket, blob_prefix)
        self.offload_threshold = offload_threshold if bucket is not None else INLINE_MAX_BYTES
        self.max_value_bytes = OFFLOADED_MAX_BYTES if bucket is not None else INLINE_MAX_BYTES
        self._where = endpoint_description or f"DynamoDB table {table!r}"
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="ddb")
        self._owns_clients = owns_clients
        self._closed = False

    @classmethod
    def from_settings(cls, settings: DynamoDbSettings, **kwargs: Any) -> DynamoDbBackend:
        """Open the table a parsed ``dynamodb://`` URL names (no I/O yet)."""
        max_concurrency = int(kwargs.get("max_concurrency", 32))
        ddb, s3 = make_clients(settings, max_pool_connections=max_concurrency + 8)
        where = f"DynamoDB table {settings.table!r}" + (
            f" at {settings.endpoint_url}" if settings.endpoint_url else ""
        )
        return cls(
            settings.table,
            client=ddb,
            s3_client=s3,
            bucket=settings.bucket,
            endpoint_description=where,
            **kwargs,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> DynamoDbBackend:
        """Open ``dynamodb://TABLE?...`` (see :func:`parse_url`)."""
        scheme, sep, rest = url.partition("://")
        if scheme.lower() != "dynamodb" or not sep:
            raise ValueError(f"not a dynamodb:// URL: {url!r}")
        return cls.from_settings(parse_url(rest), **kwargs)

    # -- plumbing ----------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise RuntimeError("DynamoDbBackend is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _api(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``client.<method>``; translate errors (conditional failures to _ConditionFailed)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            response: dict[str, Any] = getattr(self.client, method)(**kwargs)
            return response
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            message = str(e.response.get("Error", {}).get("Message", ""))
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise _ConditionFailed(e.response) from e
            if code == "TransactionConflictException":
                raise _TransactionConflict(message) from e
            if (
                code in _THROTTLED
                or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
            ):
                raise BackendUnavailableError(f"{self._where}: {method}: {code}: {message}") from e
            if code == "ResourceNotFoundException":
                raise BackendError(
                    f"{self._where} does not exist (or is not ready): {message}; create it with "
                    "`restate-lambda storage init URL`"
                ) from e
            if code == "ValidationException" and "size" in message.lower():
                raise ValueTooLargeError(f"{self._where}: {method}: {message}") from e
            raise BackendError(f"{self._where}: {method} failed: {code}: {message}") from e
        except NoCredentialsError as e:
            raise BackendError(f"{self._where}: no AWS credentials found: {e}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"{self._where} is unreachable: {e}") from e

    def _decode(self, raw: dict[str, Any]) -> Item:
        if "b" in raw:
            value = bytes(raw["b"]["B"])
        elif "r" in raw:
            if self.blobs is None:
                raise BackendError(
                    f"item {decode_key(raw['pk']['S'])!r}/{decode_key(raw['sk']['S'])!r} is "
                    "stored in S3 but no bucket is configured (add bucket=... to the URL)"
                )
            value = self.blobs.get(raw["r"]["S"])
        else:
            value = b""
        return Item(
            decode_key(raw["pk"]["S"]),
            decode_key(raw["sk"]["S"]),
            value,
            int(raw["v"]["N"]),
            int(raw["d"]["N"]) if "d" in raw else None,
        )

    # -- reads -------------------------------------------------------------------------------

    async def get(self, pk: str, sk: str) -> Item | None:
        """Return the item, or ``None`` (strongly consistent ``GetItem``)."""
        check_key(pk, sk)
        _check_key_size(pk, sk)
        return await self._run(self._get_sync, pk, sk)

    def _get_sync(self, pk: str, sk: str) -> Item | None:
        raw = self._api(
            "get_item", TableName=self.table, Key=_key(pk, sk), ConsistentRead=True
        ).get("Item")
        return None if raw is None else self._decode(raw)

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """Items of ``pk`` whose sort key starts with ``prefix``, in sort-key order."""
        check_query(pk, prefix, after, limit)
        if limit == 0:
            return []
        return await self._run(self._query_sync, pk, prefix, after, limit, reverse)

    def _query_sync(
        self, pk: str, prefix: str, after: str | None, limit: int | None, reverse: bool
    ) -> list[Item]:
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
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            "ScanIndexForward": not reverse,
        }
        out: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                request["Limit"] = min(limit - len(out) + 2, 1000)
            page = self._api("query", **request)
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
        return [self._decode(raw) for raw in out]

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """Items with ``due_ms <= until_ms`` ordered by ``(due_ms, pk, sk)``, at most ``limit``.

        Reads the due index (which may lag writes) and then the items themselves (consistent).
        """
        check_limit(limit)
        if limit == 0:
            return []
        shards = await asyncio.gather(
            *(
                self._run(self._due_candidates, f"due#{n}", until_ms, limit)
                for n in range(DUE_SHARDS)
            )
        )
        candidates = sorted(c for shard in shards for c in shard)
        found: list[Item] = []
        pos = 0
        while len(found) < limit and pos < len(candidates):
            chunk = candidates[pos : pos + limit - len(found)]
            pos += len(chunk)
            items = await self._run(self._batch_get, [(pk, sk) for _, pk, sk in chunk])
            found += [i for i in items if i.due_ms is not None and i.due_ms <= until_ms]
        found.sort(key=lambda i: (i.due_ms, i.pk, i.sk))
        return found[:limit]

    def _due_candidates(self, shard: str, until_ms: int, limit: int) -> list[tuple[int, str, str]]:
        """The first ``limit`` keys of one shard by ``d``, plus every tie of the last one."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "ds = :ds AND d <= :until",
            "ExpressionAttributeValues": {":ds": {"S": shard}, ":until": {"N": str(until_ms)}},
            "Limit": min(limit, 1000),
        }
        rows: list[tuple[int, str, str]] = []
        while True:
            page = self._api("query", **request)
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

    def _batch_get(self, keys: list[tuple[str, str]]) -> list[Item]:
        """Consistent ``BatchGetItem`` of ``keys`` (missing ones are left out), any order."""
        out: list[Item] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [_key(pk, sk) for pk, sk in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            delay = 0.01
            while pending:
                page = self._api("batch_get_item", RequestItems=pending)
                out += [self._decode(raw) for raw in page.get("Responses", {}).get(self.table, [])]
                pending = page.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 1.0)
        return out

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the items at ``keys`` with ``BatchWriteItem`` (25 a request, not atomic).

        Offloaded blobs stay in S3 (content-addressed and possibly shared; see the TODO above).
        """
        for pk, sk in keys:
            check_key(pk, sk)
        if keys:
            await self._run(self._delete_items_sync, list(keys))

    def _delete_items_sync(self, keys: list[tuple[str, str]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [
                {"DeleteRequest": {"Key": _key(pk, sk)}} for pk, sk in keys[start : start + 25]
            ]
            pending: dict[str, Any] = {self.table: requests}
            delay = 0.01
            while pending:
                page = self._api("batch_write_item", RequestItems=pending)
                pending = page.get("UnprocessedItems") or {}
                if pending:
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 1.0)

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """Items whose pk starts with ``pk_prefix`` and whose sort key is ``sk``, by pk.

        A full table ``Scan`` (filtered server-side): for admin listings only.
        """
        check_key(pk_prefix, sk)
        check_limit(limit)
        if limit == 0 or len(encode_key(sk).encode()) > MAX_SK_BYTES:
            return []
        return await self._run(self._scan_sync, pk_prefix, sk, limit)

    def _scan_sync(self, pk_prefix: str, sk: str, limit: int | None) -> list[Item]:
        values: dict[str, Any] = {":sk": {"S": encode_key(sk)}}
        condition = "sk = :sk"
        if pk_prefix:
            condition += " AND begins_with(pk, :pkp)"
            values[":pkp"] = {"S": encode_key(pk_prefix)}
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        raws: list[dict[str, Any]] = []
        while True:
            page = self._api("scan", **request)
            raws += page.get("Items", [])
            more = page.get("LastEvaluatedKey")
            if more is None:
                break
            request["ExclusiveStartKey"] = more
        raws.sort(key=lambda r: decode_key(r["pk"]["S"]))
        if limit is not None:
            raws = raws[:limit]
        return [self._decode(raw) for raw in raws]

    # -- writes ------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically, or raise ``ConflictError`` naming the first failing op.

        If the awaiting task is cancelled once the request is sent, the batch may still apply.

        Raises:
            ConflictError: a condition failed.
            ValueError: empty batch, more than 100 operations, an item named twice, a key too long.
            ValueTooLargeError: a value (or the batch) too large, with or without offloading.
            BackendUnavailableError: throttled, timed out or unreachable after retries.
        """
        validate_batch(ops, max_ops=self.max_batch_ops, max_value_bytes=OFFLOADED_MAX_BYTES)
        for i, op in enumerate(ops):
            _check_key_size(op.pk, op.sk)
            if isinstance(op, Put) and len(op.value) > self.max_value_bytes:
                hint = (
                    "configure an S3 bucket (dynamodb://TABLE?bucket=...) to store values up to "
                    f"{OFFLOADED_MAX_BYTES} bytes"
                    if self.blobs is None
                    else "values are limited even with S3 offloading"
                )
                raise ValueTooLargeError(
                    f"operation {i}: value of {len(op.value)} bytes for {op.pk!r}/{op.sk!r} "
                    f"exceeds {self.max_value_bytes} bytes (DynamoDB items hold 400 KB); {hint}"
                )
        await self._run(self._write_sync, list(ops))

    def _write_sync(self, ops: list[WriteOp]) -> None:
        prepared = self._prepare(ops)
        if len(prepared) == 1:
            self._write_one(prepared[0])
        else:
            self._transact(prepared)

    def _prepare(self, ops: list[WriteOp]) -> list[_Prepared]:
        """Map ops to items; offload values that are too big alone or for the batch's budget."""
        prepared: list[_Prepared] = []
        for op in ops:
            key = _key(op.pk, op.sk)
            size = len(key["pk"]["S"].encode()) + len(key["sk"]["S"].encode()) + 64
            if isinstance(op, Put):
                value = bytes(op.value)
                prepared.append(_Prepared(op, key, value=value, size=size + len(value)))
            else:
                prepared.append(_Prepared(op, key, size=size))
        for p in prepared:
            if p.value is not None and len(p.value) > self.offload_threshold:
                self._offload(p)
        if len(prepared) > 1:
            total = sum(p.size for p in prepared)
            for p in sorted(prepared, key=lambda p: -p.size):
                if total <= TXN_BUDGET_BYTES or p.value is None:
                    break
                if self.blobs is None:
                    raise ValueTooLargeError(
                        f"the batch holds about {total} bytes; a DynamoDB transaction holds at "
                        f"most 4 MB (configure an S3 bucket to offload large values)"
                    )
                before = p.size
                self._offload(p)
                total -= before - p.size
        for p in prepared:
            if isinstance(p.op, Put):
                attrs = dict(p.key)
                attrs["v"] = {"N": str(1 if not p.op.expect else p.op.expect + 1)}
                if p.value is not None:
                    attrs["b"] = {"B": p.value}
                else:
                    assert p.attrs is not None
                    attrs["r"] = p.attrs["r"]
                if p.op.due_ms is not None:
                    attrs["d"] = {"N": str(p.op.due_ms)}
                    attrs["ds"] = {"S": due_shard(p.op.pk, p.op.sk)}
                if p.op.expires_ms is not None:
                    # TTL wants epoch seconds; round up so nothing goes before its time.
                    attrs[TTL_ATTRIBUTE] = {"N": str(-(-p.op.expires_ms // 1000))}
                p.attrs = attrs
        return prepared

    def _offload(self, p: _Prepared) -> None:
        assert p.value is not None
        if self.blobs is None:  # validate_batch already rejects these; belt and braces
            raise ValueTooLargeError(
                f"value of {len(p.value)} bytes for {p.op.pk!r}/{p.op.sk!r} exceeds "
                f"{INLINE_MAX_BYTES} bytes (DynamoDB items hold 400 KB); configure an S3 bucket "
                "(dynamodb://TABLE?bucket=...) to store large values"
            )
        ref = self.blobs.put(p.value)
        p.size -= len(p.value) - len(ref)
        p.attrs = {"r": {"S": ref}}
        p.value = None

    def _write_one(self, p: _Prepared) -> None:
        op = p.op
        if isinstance(op, Check):
            raw = self._api(
                "get_item",
                TableName=self.table,
                Key=p.key,
                ConsistentRead=True,
                ProjectionExpression="v",
            ).get("Item")
            found = 0 if raw is None else int(raw["v"]["N"])
            if found != op.expect:
                raise _conflict(0, op, found)
            return
        if isinstance(op, Delete) and op.expect:
            self._transact([p])  # idempotent retries for fire-once claims
            return
        request: dict[str, Any] = {"TableName": self.table}
        _add_condition(request, op.expect)
        if isinstance(op, Delete):
            method = "delete_item"
            request["Key"] = p.key
        elif op.expect is None:
            method = "update_item"
            request["Key"] = p.key
            _add_upsert(request, p)
        else:
            method = "put_item"
            request["Item"] = p.attrs
        if op.expect is not None:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            delay = 0.005
            for attempt in range(_TXN_CONFLICT_ATTEMPTS):
                try:
                    self._api(method, **request)
                    return
                except _TransactionConflict as e:
                    if attempt == _TXN_CONFLICT_ATTEMPTS - 1:
                        raise BackendUnavailableError(
                            f"{self._where}: {method} kept colliding with transactions on "
                            f"{op.pk!r}/{op.sk!r} ({e}); nothing was applied, retry"
                        ) from e
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay *= 2
        except _ConditionFailed as e:
            old = e.response.get("Item")
            retried = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
            if retried and method == "put_item" and old == p.attrs:
                return  # our first attempt applied; its response was lost
            raise _conflict(
                0, op, None if old is None else int(old["v"]["N"]), old is None
            ) from None

    def _transact(self, prepared: list[_Prepared]) -> None:
        items: list[dict[str, Any]] = []
        for p in prepared:
            op = p.op
            entry: dict[str, Any] = {"TableName": self.table}
            _add_condition(entry, op.expect)
            if isinstance(op, Put):
                if op.expect is None:
                    entry["Key"] = p.key
                    _add_upsert(entry, p)
                    items.append({"Update": entry})
                else:
                    entry["Item"] = p.attrs
                    items.append({"Put": entry})
            elif isinstance(op, Delete):
                entry["Key"] = p.key
                items.append({"Delete": entry})
            else:
                entry["Key"] = p.key
                items.append({"ConditionCheck": entry})
        delay = 0.005
        for attempt in range(_TXN_CONFLICT_ATTEMPTS):
            try:
                # botocore fills in ClientRequestToken, so its own retries are idempotent.
                self._api("transact_write_items", TransactItems=items)
                return
            except _ConditionFailed as e:
                reasons = e.response.get("CancellationReasons") or []
                codes = [str(r.get("Code", "None")) for r in reasons]
                if "ConditionalCheckFailed" in codes:
                    i = codes.index("ConditionalCheckFailed")
                    raise _conflict(i, prepared[i].op, None) from None
                if "ValidationError" in codes:
                    message = str(reasons[codes.index("ValidationError")].get("Message", ""))
                    error = ValueTooLargeError if "size" in message.lower() else BackendError
                    raise error(f"{self._where}: transaction rejected: {message}") from None
                if any(c in _THROTTLED or c.startswith("Throughput") for c in codes) or (
                    attempt == _TXN_CONFLICT_ATTEMPTS - 1
                ):
                    raise BackendUnavailableError(
                        f"{self._where}: transaction cancelled ({', '.join(codes)}); "
                        "nothing was applied, retry"
                    ) from None
                # TransactionConflict: another transaction held an item; nothing was applied.
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2

    # -- lifecycle ---------------------------------------------------------------------------

    async def check(self) -> None:
        """Verify the table (and bucket) exist, are reachable and have the expected layout.

        Raises:
            BackendUnavailableError: the endpoint cannot be reached.
            BackendError: the table or bucket is missing or laid out differently.
        """
        await self._run(self._check_sync)

    ping = check

    def _check_sync(self) -> None:
        table = self._api("describe_table", TableName=self.table)["Table"]
        problems = table_mismatches(self.table, table)
        if problems:
            raise BackendError(
                f"{self._where} does not have the expected layout: {'; '.join(problems)}"
            )
        if self.blobs is not None:
            self.blobs.check()

    async def close(self) -> None:
        """Stop the worker threads and close the HTTP connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, True)
        if not self._owns_clients:
            return
        for client in (self.client, None if self.blobs is None else self.blobs.client):
            close = getattr(client, "close", None)
            if close is not None:
                close()


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": encode_key(pk)}, "sk": {"S": encode_key(sk)}}


def _add_condition(request: dict[str, Any], expect: int | None) -> None:
    if expect == 0:
        request["ConditionExpression"] = "attribute_not_exists(pk)"
    elif expect is not None:
        request["ConditionExpression"] = "v = :expect"
        request.setdefault("ExpressionAttributeValues", {})[":expect"] = {"N": str(expect)}


def _add_upsert(request: dict[str, Any], p: _Prepared) -> None:
    """An unconditional put as ``UpdateItem``: bump the version, set the rest, remove leftovers."""
    assert p.attrs is not None
    values = request.setdefault("ExpressionAttributeValues", {})
    values[":zero"] = {"N": "0"}
    values[":one"] = {"N": "1"}
    sets = ["v = if_not_exists(v, :zero) + :one"]
    removes: list[str] = []
    for name in ("b", "r", "d", "ds", TTL_ATTRIBUTE):
        if name in p.attrs:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = p.attrs[name]
        else:
            removes.append(name)
    request["UpdateExpression"] = f"SET {', '.join(sets)} REMOVE {', '.join(removes)}"


def _conflict(index: int, op: WriteOp, found: int | None, absent: bool = False) -> ConflictError:
    want = "absent" if op.expect == 0 else f"at version {op.expect}"
    if absent or found == 0:
        state = ", found absent"
    elif found is None:
        state = ""
    else:
        state = f", found at version {found}"
    return ConflictError(
        f"operation {index}: item {op.pk!r}/{op.sk!r} expected {want}{state}", index=index
    )
