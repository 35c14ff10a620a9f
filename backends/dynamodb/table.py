"""One table's synchronous access: a boto3 call with its errors mapped, and item decoding.

:class:`TableClient` is what the read and write paths (:mod:`backends.dynamodb.reads`,
:mod:`backends.dynamodb.writes`) share: the boto3 client, the table name, a description of the
endpoint for messages, and the optional S3 blob store offloaded values live in. Its methods block;
``DynamoDbBackend`` runs them on its worker threads.
"""

from __future__ import annotations

from typing import Any

from backends.api import BackendError, Item
from backends.dynamodb.errors import translate
from backends.dynamodb.schema import decode_key
from backends.s3_blobs import S3BlobStore


class TableClient:
    """Blocking calls against one table.

    Args:
        client: a boto3 DynamoDB client (thread-safe, shared).
        name: the table name.
        where: the table and endpoint, for error messages.
        blobs: the store of offloaded values, ``None`` without a bucket.
    """

    def __init__(self, client: Any, name: str, where: str, blobs: S3BlobStore | None) -> None:
        """Keep the collaborators; no I/O."""
        self.client = client
        self.name = name
        self.where = where
        self.blobs = blobs

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

    def decode(self, raw: dict[str, Any]) -> Item:
        """The contract's :class:`~backends.api.Item` for a raw DynamoDB item (fetches blobs)."""
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
