"""Content-addressed blob storage on S3 for values too large for one DynamoDB item.

A blob lives at ``{prefix}{sha256-hex}`` (default prefix ``blobs/``). Writing is idempotent:
the same bytes always go to the same key, so a retried or repeated upload is harmless, and the
upload uses ``If-None-Match: *`` so an existing blob is never rewritten (a ``412`` means "already
there"). Reads verify the SHA-256 of what comes back against the key.

The methods are synchronous (boto3); :class:`~backends.dynamodb.DynamoDbBackend` calls them on
its worker threads. The boto3 client is thread-safe and shared.

**Garbage collection (TODO).** Blobs are shared by content, so deleting one when an item that
referenced it is deleted or overwritten is unsafe without reference counting, and a failed
conditional write leaves the blob it uploaded first behind. A sweeper that lists ``blobs/``,
scans the table for the ``r`` attribute and deletes unreferenced blobs older than, say, a day
(the age guards uploads whose item write is still in flight) would reclaim them; none exists yet.
"""

from __future__ import annotations

import hashlib
from typing import Any

from backends.api import BackendError, BackendUnavailableError

#: Error codes that mean "try again later" on S3.
_TRANSIENT = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)


def blob_key(value: bytes, prefix: str = "blobs/") -> str:
    """The object key a value is stored under: ``{prefix}{sha256(value) hex}``."""
    return prefix + hashlib.sha256(value).hexdigest()


class S3BlobStore:
    """Put and get immutable, content-addressed blobs in one bucket.

    Args:
        client: a boto3 S3 client (shared, thread-safe).
        bucket: the bucket name.
        prefix: key prefix of every blob.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "blobs/") -> None:
        """Wrap ``client`` for ``bucket``; no I/O."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put(self, value: bytes) -> str:
        """Upload ``value`` unless it is already stored; return its key."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = blob_key(value, self.prefix)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=value,
                IfNoneMatch="*",
                ContentType="application/octet-stream",
            )
        except ClientError as e:
            code = _code(e)
            if code in ("PreconditionFailed", "412"):
                return key  # the same content is already there
            if code in ("ConditionalRequestConflict", "409"):
                # A concurrent upload of the same key is in flight: write it unconditionally
                # (same bytes, so whichever lands last is identical).
                try:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=value)
                except ClientError as e2:
                    raise _translate(e2, f"s3://{self.bucket}/{key}") from e2
                return key
            raise _translate(e, f"s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"S3 upload of {key} failed: {e}") from e
        return key

    def get(self, key: str) -> bytes:
        """Download the blob at ``key`` and check its digest."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = response["Body"].read()
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise BackendError(
                    f"blob s3://{self.bucket}/{key} referenced by an item is missing"
                ) from e
            raise _translate(e, f"s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise BackendUnavailableError(f"S3 download of {key} failed: {e}") from e
        if blob_key(data, self.prefix) != key:
            raise BackendError(f"blob s3://{self.bucket}/{key} is corrupt (digest mismatch)")
        return data

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
