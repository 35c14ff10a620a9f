"""``DynamoDbBackend``: the storage contract's async surface on one DynamoDB table.

Arguments are validated here, before any I/O (the same checks as every backend, plus DynamoDB's
key and item size limits); the blocking work runs in :mod:`backends.dynamodb.reads` and
:mod:`backends.dynamodb.writes` on the backend's own thread pool.

**Blobs.** With a bucket, values over ``offload_threshold`` live in S3; the write path and
:meth:`DynamoDbBackend.sweep_blobs` collect the garbage (:mod:`backends.dynamodb.blob_gc`).

**Threads.** One boto3 client (thread-safe, connection pool sized to ``max_concurrency``, TCP
keep-alive) shared by a dedicated thread pool of ``max_concurrency`` workers; every call runs there
via ``run_in_executor`` (the default executor is only ``cpu + 4`` threads wide).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from backends._batch import check_key, check_limit, check_query, validate_batch
from backends.api import BackendError, Item, Put, ValueTooLargeError, WriteOp
from backends.dynamodb.blob_gc import DEFAULT_GRACE_MS, SweepReport, sweep
from backends.dynamodb.reads import batch_get, due_candidates, get_item, query_items, scan_items
from backends.dynamodb.schema import (
    DUE_SHARDS,
    INLINE_MAX_BYTES,
    MAX_BATCH_OPS,
    MAX_SK_BYTES,
    OFFLOADED_MAX_BYTES,
    check_key_size,
    encode_key,
    table_mismatches,
)
from backends.dynamodb.settings import DynamoDbSettings, make_clients, parse_url
from backends.dynamodb.table import TableClient
from backends.dynamodb.writes import delete_keys, write_batch
from backends.s3_blobs import S3BlobStore
from restate_lambda.clock import SystemClock

_T = TypeVar("_T")


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
        self.blobs = None if bucket is None else S3BlobStore(s3_client, bucket, blob_prefix, table)
        self.offload_threshold = offload_threshold if bucket is not None else INLINE_MAX_BYTES
        self.max_value_bytes = OFFLOADED_MAX_BYTES if bucket is not None else INLINE_MAX_BYTES
        self._where = endpoint_description or f"DynamoDB table {table!r}"
        self._t = TableClient(client, table, self._where, self.blobs)
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
        """Open ``dynamodb://TABLE?...`` (see :func:`~backends.dynamodb.settings.parse_url`)."""
        scheme, sep, rest = url.partition("://")
        if scheme.lower() != "dynamodb" or not sep:
            raise ValueError(f"not a dynamodb:// URL: {url!r}")
        return cls.from_settings(parse_url(rest), **kwargs)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise RuntimeError("DynamoDbBackend is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, pk: str, sk: str) -> Item | None:
        """Return the item, or ``None`` (strongly consistent ``GetItem``)."""
        check_key(pk, sk)
        check_key_size(pk, sk)
        return await self._run(get_item, self._t, pk, sk)

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
        return await self._run(query_items, self._t, pk, prefix, after, limit, reverse)

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """Items with ``due_ms <= until_ms`` ordered by ``(due_ms, pk, sk)``, at most ``limit``.

        Reads the due index (which may lag writes) and then the items themselves (consistent).
        """
        check_limit(limit)
        if limit == 0:
            return []
        shards = await asyncio.gather(
            *(
                self._run(due_candidates, self._t, f"due#{n}", until_ms, limit)
                for n in range(DUE_SHARDS)
            )
        )
        candidates = sorted(c for shard in shards for c in shard)
        found: list[Item] = []
        pos = 0
        while len(found) < limit and pos < len(candidates):
            chunk = candidates[pos : pos + limit - len(found)]
            pos += len(chunk)
            items = await self._run(batch_get, self._t, [(pk, sk) for _, pk, sk in chunk])
            found += [i for i in items if i.due_ms is not None and i.due_ms <= until_ms]
        found.sort(key=lambda i: (i.due_ms, i.pk, i.sk))
        return found[:limit]

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """Items whose pk starts with ``pk_prefix`` and whose sort key is ``sk``, by pk.

        A full table ``Scan`` (filtered server-side): for admin listings only.
        """
        check_key(pk_prefix, sk)
        check_limit(limit)
        if limit == 0 or len(encode_key(sk).encode()) > MAX_SK_BYTES:
            return []
        return await self._run(scan_items, self._t, pk_prefix, sk, limit)

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
            check_key_size(op.pk, op.sk)
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
        await self._run(write_batch, self._t, list(ops), self.offload_threshold)

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the items at ``keys`` with ``BatchWriteItem`` (25 a request, not atomic).

        The blobs of deleted items that this process has read or written are deleted with them;
        others are left to :meth:`sweep_blobs` (see :mod:`backends.dynamodb.blob_gc`).
        """
        for pk, sk in keys:
            check_key(pk, sk)
        if keys:
            await self._run(delete_keys, self._t, list(keys))

    # -- blob garbage ------------------------------------------------------------------------

    async def sweep_blobs(
        self,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        now_ms: int | None = None,
        check_unowned: bool = True,
    ) -> SweepReport:
        """Delete offloaded values no item refers to, older than ``grace_ms``.

        See :mod:`backends.dynamodb.blob_gc` for what this guarantees. Run it periodically
        (hourly or daily) from one process; concurrent sweeps are safe but wasteful.

        Args:
            grace_ms: keep blobs younger than this (at least ``MIN_GRACE_MS``, one hour).
            now_ms: the current time in epoch ms (default: the system clock).
            check_unowned: see :func:`backends.dynamodb.blob_gc.sweep`.

        Raises:
            ValueError: ``grace_ms`` is too short.
            BackendError: no bucket is configured.
        """
        now = SystemClock().now_ms() if now_ms is None else now_ms
        return await self._run(
            functools.partial(
                sweep, self._t, now_ms=now, grace_ms=grace_ms, check_unowned=check_unowned
            )
        )

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
        table = self._t.call("describe_table", TableName=self.table)["Table"]
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
