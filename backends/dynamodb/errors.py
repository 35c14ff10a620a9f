"""How DynamoDB's native failures map to the storage contract's errors.

=============================================  ================================================
``ConditionalCheckFailedException``,           :class:`ConditionFailed` (interpreted by the write
``TransactionCanceledException``               path: a :class:`~backends.api.ConflictError`
                                               naming the first failing operation, or a retry)
``TransactionConflictException``               :class:`TransactionConflict` (nothing applied;
                                               the write path retries it with backoff)
throttling, 5xx, timeouts, connection errors   :class:`~backends.api.BackendUnavailableError`
                                               (after botocore's standard retries)
``ResourceNotFoundException``                  :class:`~backends.api.BackendError` naming
                                               ``restate-lambda storage init``
``ValidationException`` about a size           :class:`~backends.api.ValueTooLargeError`
anything else, missing credentials             :class:`~backends.api.BackendError`
=============================================  ================================================
"""

from __future__ import annotations

from typing import Any, Final

from backends.api import (
    BackendError,
    BackendUnavailableError,
    ConflictError,
    ValueTooLargeError,
    WriteOp,
)

#: Error codes (and cancellation reasons) that mean "throttled or briefly unavailable".
THROTTLED: Final = frozenset(
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


class TransactionConflict(Exception):
    """A single-item write collided with an in-flight transaction; nothing was applied."""


class ConditionFailed(Exception):
    """A ConditionalCheckFailed / TransactionCanceled response, before interpretation."""

    def __init__(self, response: dict[str, Any]) -> None:
        """Keep the whole error ``response`` (it may carry the stored item or reasons)."""
        super().__init__(response.get("Error", {}).get("Message", "condition failed"))
        self.response = response


def translate(error: Exception, method: str, where: str) -> Exception:
    """The exception to raise for a botocore ``error`` raised by ``client.<method>``.

    Args:
        error: a ``ClientError`` or another ``BotoCoreError``.
        method: the client method that failed (for the message).
        where: which table, e.g. ``"DynamoDB table 't' at http://..."``.
    """
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", ""))
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            return ConditionFailed(error.response)
        if code == "TransactionConflictException":
            return TransactionConflict(message)
        if (
            code in THROTTLED
            or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
        ):
            return BackendUnavailableError(f"{where}: {method}: {code}: {message}")
        if code == "ResourceNotFoundException":
            return BackendError(
                f"{where} does not exist (or is not ready): {message}; create it with "
                "`restate-lambda storage init URL`"
            )
        if code == "ValidationException" and "size" in message.lower():
            return ValueTooLargeError(f"{where}: {method}: {message}")
        return BackendError(f"{where}: {method} failed: {code}: {message}")
    if isinstance(error, NoCredentialsError):
        return BackendError(f"{where}: no AWS credentials found: {error}")
    return BackendUnavailableError(f"{where} is unreachable: {error}")


def conflict(index: int, op: WriteOp, found: int | None, absent: bool = False) -> ConflictError:
    """The :class:`ConflictError` for operation ``index`` of a batch.

    Args:
        found: the version found (``None`` when unknown, ``0`` when absent).
        absent: the item was found absent.
    """
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


class NotAppliedError(BackendUnavailableError):
    """A write failed for a reason that certainly left the table unchanged; retry it.

    Raised for cancellations that apply nothing (persistent ``TransactionConflict``, throttled
    transactions) and for batches whose blobs were uploaded too long ago to commit safely. The
    write path deletes the blobs such a batch uploaded right away.
    """
