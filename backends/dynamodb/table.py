"""One table's synchronous access: a boto3 call with its errors mapped, and item decoding.

:class:`TableClient` is what the read and write paths (:mod:`backends.dynamodb.reads`,
:mod:`backends.dynamodb.writes`) and the blob sweep share: the boto3 client, the table name, a
description of the endpoint for messages, the optional S3 blob store offloaded values live in, and
the cache of blob references this process has seen. Its methods block; ``DynamoDbBackend`` runs
them on its worker threads.

**Reading a blob that was just deleted.** A blob is deleted once the item version that referred
to it has been replaced or deleted. A reader that fetched that older version a moment before
then finds the blob gone: :meth:`TableClient.decode` re-reads the item (consistently) and returns
its current state instead (or ``None`` if it is gone), as if the read had happened just after the
write. Only a blob missing while the item still refers to it is an error. An item replaced faster
than its value can be fetched, again and again, ends in a retryable ``BackendUnavailableError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from backends.api import BackendError, BackendUnavailableError, Item
from backends.dynamodb.blob_refs import RefCache
from backends.dynamodb.errors import translate
from backends.dynamodb.schema import decode_key
from backends.s3_blobs import BlobMissingError, S3BlobStore, is_unique_key

log = logging.getLogger(__name__)

#: Re-reads of an item whose blob keeps disappearing before giving up.
_REREADS: Final = 8


class TableClient:
    """Blocking calls against one table.

    Args:
        client: a boto3 DynamoDB client (thread-safe, shared).
        name: the table name.
        where: the table and endpoint, for error messages.
        blobs: the store of offloaded values, ``None`` without a bucket.
        refs: blob references seen by this process (a new cache when omitted).
    """

    def __init__(
        self,
        client: Any,
        name: str,
        where: str,
        blobs: S3BlobStore | None,
        refs: RefCache | None = None,
    ) -> None:
        """Keep the collaborators; no I/O."""
        self.client = client
        self.name = name
        self.where = where
        self.blobs = blobs
        self.refs = refs if refs is not None else RefCache()

    def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``client.<method>``; translate errors (:func:`backends.dynamodb.errors.translate`).

        Raises:
            ConditionFailed: a condition failed or a transaction was cancelled.
            TransactionConflict: a single-item write met an in-flight transaction.
            BackendUnavailableError: throttled, 5xx, timed out or unreachable.
            BackendError: anything else.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, method)(**kwargs)
            return response
        except (ClientError, BotoCoreError) as e:
            raise translate(e, method, self.where) from e

    def decode(self, raw: dict[str, Any]) -> Item | None:
        """The contract's :class:`~backends.api.Item` for a raw DynamoDB item (fetches blobs).

        Returns ``None`` when the item was deleted while its blob was being fetched (see the
        module docstring); a replaced item's new state is returned instead of the old one.
        """
        for _ in range(_REREADS):
            ref = raw["r"]["S"] if "r" in raw else None
            pk, sk = decode_key(raw["pk"]["S"]), decode_key(raw["sk"]["S"])
            if ref is None:
                value = bytes(raw["b"]["B"]) if "b" in raw else b""
            elif self.blobs is None:
                raise BackendError(
                    f"item {pk!r}/{sk!r} is stored in S3 but no bucket is configured "
                    "(add bucket=... to the URL)"
                )
            else:
                try:
                    value = self.blobs.get(ref)
                except BlobMissingError:
                    fresh = self.call(
                        "get_item", TableName=self.name, Key=_raw_key(raw), ConsistentRead=True
                    ).get("Item")
                    if fresh is None:
                        self.refs.seen(pk, sk, None)
                        return None
                    if fresh.get("r") == raw["r"]:
                        raise  # the item still refers to it: really missing
                    raw = fresh
                    continue
            self.refs.seen(pk, sk, ref)
            return Item(
                pk, sk, value, int(raw["v"]["N"]), int(raw["d"]["N"]) if "d" in raw else None
            )
        raise BackendUnavailableError(
            f"{self.where}: item {decode_key(raw['pk']['S'])!r}/{decode_key(raw['sk']['S'])!r} "
            f"was replaced {_REREADS} times while its value was read; retry"
        )

    def delete_blobs(self, keys: Iterable[str]) -> None:
        """Delete garbage blobs, best effort: failures are logged and left for the sweep.

        Only per-upload keys are deleted (:func:`~backends.s3_blobs.is_unique_key`); older
        content-addressed ones may be shared and are left to the sweep.
        """
        if self.blobs is None:
            return
        unique = [k for k in keys if is_unique_key(k, self.blobs.prefix)]
        if not unique:
            return
        try:
            failed = self.blobs.delete(unique)
        except Exception:  # never fail a committed write over its garbage
            log.warning("deleting %d garbage blobs failed", len(unique), exc_info=True)
            return
        if failed:
            log.warning("%d garbage blobs not deleted (left for the sweep)", len(failed))


def _raw_key(raw: dict[str, Any]) -> dict[str, Any]:
    return {"pk": raw["pk"], "sk": raw["sk"]}
