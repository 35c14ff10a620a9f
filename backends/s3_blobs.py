"""S3 storage of the values too large for one DynamoDB item: one object per stored value.

**Keys.** Every upload gets a key of its own, ``{prefix}{sha256 hex}.{nonce}`` (default prefix
``blobs/``, a 64-bit random nonce): one blob belongs to exactly one version of one item, so it can
be deleted as soon as that version is overwritten or deleted, without reference counting. The
digest lets a read verify what comes back. Keys of the older content-addressed layout,
``{prefix}{sha256 hex}`` without a nonce, are still read (and verified) but never deleted
eagerly, since such a blob may be shared by several items; only the sweep removes them
(:mod:`backends.dynamodb.blob_gc`).

**Owner.** Each blob records the item it was uploaded for in its user metadata (``owner-table``,
and ``owner-pk`` and ``owner-sk``, base64url of the UTF-8 key), so the garbage sweep checks a blob
with one read of that item instead of scanning the table, and leaves the blobs of other tables
sharing the bucket alone. Keys too long for S3's 2 KB of metadata are left out; the sweep then
falls back to a table scan for those blobs.

**Writes** use ``If-None-Match: *`` (the key is new, so a ``412`` can only be this upload's own
earlier attempt, retried by botocore after a lost response: success). Reads verify the SHA-256 of
what comes back against the key and raise :class:`BlobMissingError` for a key that is gone.

The methods are synchronous (boto3); ``DynamoDbBackend`` calls them on its worker threads. The
boto3 client is thread-safe and shared.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Iterator
from typing import Any, Final

from backends.api import BackendError, BackendUnavailableError

#: Error codes that mean "try again later" on S3.
_TRANSIENT = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)
#: Most user metadata S3 keeps per object is 2 KB; the owner's key must fit with room to spare.
_OWNER_METADATA_MAX: Final = 1800
_DIGEST_HEX: Final = 64


class BlobMissingError(BackendError):
    """A blob an item refers to is not in the bucket (deleted, or never uploaded)."""


def blob_key(value: bytes, prefix: str = "blobs/") -> str:
    """The content-addressed key of the older layout: ``{prefix}{sha256(value) hex}``."""
    return prefix + hashlib.sha256(value).hexdigest()


def new_blob_key(value: bytes, prefix: str = "blobs/") -> str:
    """A fresh key for one upload of ``value``: ``{prefix}{sha256 hex}.{16 hex digits}``."""
    return f"{blob_key(value, prefix)}.{secrets.token_hex(8)}"


def is_unique_key(key: str, prefix: str = "blobs/") -> bool:
    """Whether ``key`` is a per-upload key (never shared, so safe to delete with its item)."""
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    digest, dot, nonce = name.partition(".")
    return len(digest) == _DIGEST_HEX and bool(dot) and len(nonce) == 16


def _digest_of(key: str, prefix: str) -> str | None:
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    digest = name.partition(".")[0]
    return digest if len(digest) == _DIGEST_HEX else None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text.encode()).decode()


class S3BlobStore:
    """Put, get, list and delete blobs in one bucket under one prefix.

    Args:
        client: a boto3 S3 client (shared, thread-safe).
        bucket: the bucket name.
        prefix: key prefix of every blob.
        table: the table whose items own the blobs written here (recorded with each blob).
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str = "blobs/", table: str | None = None
    ) -> None:
        """Wrap ``client`` for ``bucket``; no I/O."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.table = table

    def put(self, value: bytes, owner: tuple[str, str] | None = None) -> str:
        """Upload ``value`` under a new key, recording ``owner`` (pk, sk); return the key."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = new_blob_key(value, self.prefix)
        metadata: dict[str, str] = {}
        if self.table is not None:
            metadata["owner-table"] = self.table
        if owner is not None:
            metadata.update({"owner-pk": _b64(owner[0]), "owner-sk": _b64(owner[1])})
            if sum(len(k) + len(v) for k, v in metadata.items()) > _OWNER_METADATA_MAX:
                # too long for S3's metadata: the sweep scans the table for these
                metadata = {k: v for k, v in metadata.items() if k == "owner-table"}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=value,
                IfNoneMatch="*",
                ContentType="application/octet-stream",
                Metadata=metadata,
            )
        except ClientError as e:
            code = _code(e)
            if code in ("PreconditionFailed", "412"):
                return key  # our own earlier attempt landed (the key is new)
            if code in ("ConditionalRequestConflict", "409"):
                # Our own earlier attempt is still in flight: same key, same bytes.
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=value, Metadata=metadata
                    )
                except ClientError as e2:
                    raise _translate(e2, f"s3://{self.bucket}/{key}") from e2
                return key
            raise _translate(e, f"s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"S3 upload of {key} failed: {e}") from e
        return key

    def get(self, key: str) -> bytes:
        """Download the blob at ``key`` and check its digest.

        Raises:
            BlobMissingError: there is no such blob.
            BackendError: the blob's digest does not match its key.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = response["Body"].read()
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise BlobMissingError(
                    f"blob s3://{self.bucket}/{key} referenced by an item is missing"
                ) from e
            raise _translate(e, f"s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"S3 download of {key} failed: {e}") from e
        if hashlib.sha256(data).hexdigest() != _digest_of(key, self.prefix):
            raise BackendError(f"blob s3://{self.bucket}/{key} is corrupt (digest mismatch)")
        return data

    def owner(self, key: str) -> tuple[str | None, tuple[str, str] | None]:
        """The table and ``(pk, sk)`` a blob was uploaded for; ``None`` for what is unrecorded.

        Raises:
            BlobMissingError: there is no such blob.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                raise BlobMissingError(f"blob s3://{self.bucket}/{key} is gone") from e
            raise _translate(e, f"s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"S3 HEAD of {key} failed: {e}") from e
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        table = meta.get("owner-table")
        if "owner-pk" not in meta or "owner-sk" not in meta:
            return table, None
        return table, (_unb64(meta["owner-pk"]), _unb64(meta["owner-sk"]))

    def list_blobs(self) -> Iterator[tuple[str, int]]:
        """Every blob under the prefix as ``(key, last modified in epoch ms)``, by key."""
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            try:
                page = self.client.list_objects_v2(**request)
            except ClientError as e:
                raise _translate(e, f"s3://{self.bucket}/{self.prefix}") from e
            except BotoCoreError as e:
                raise BackendUnavailableError(f"S3 listing of {self.prefix} failed: {e}") from e
            for obj in page.get("Contents", []):
                yield str(obj["Key"]), int(obj["LastModified"].timestamp() * 1000)
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, keys: Iterable[str]) -> list[str]:
        """Delete ``keys`` (absent ones count as deleted) with ``DeleteObjects``, 1000 a request.

        Returns:
            The keys that could not be deleted (left for the sweep); never raises for them.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        keys = list(dict.fromkeys(keys))
        failed: list[str] = []
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (ClientError, BotoCoreError):
                failed += chunk
                continue
            failed += [str(err.get("Key")) for err in response.get("Errors", [])]
        return failed

    def check(self) -> None:
        """Raise unless the bucket exists and is reachable (``HeadBucket``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) in ("NoSuchBucket", "404", "NotFound"):
                raise BackendError(
                    f"S3 bucket {self.bucket!r} does not exist; create it with "
                    "`restate-lambda storage init URL`"
                ) from e
            raise _translate(e, f"s3://{self.bucket}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(
                f"S3 endpoint for bucket {self.bucket!r} is unreachable: {e}"
            ) from e


def _code(e: Any) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _translate(e: Any, what: str) -> BackendError:
    code = _code(e)
    if code in _TRANSIENT:
        return BackendUnavailableError(f"S3 {what}: {code}: {e}")
    return BackendError(f"S3 {what}: {code}: {e}")
