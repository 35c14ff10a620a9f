"""Exceptions seen by handler code (terminal / retryable) and the SDK's internal control flow."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import timedelta


class TerminalError(Exception):
    """A failure that Restate must not retry: it becomes the invocation's (or the step's) result."""

    def __init__(
        self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = metadata


class RetryableError(Exception):
    """A failure that ends the attempt; Restate retries after ``retry_after`` if given."""

    def __init__(
        self, message: str, status_code: int = 500, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Internal control flow of the SDK; never catch it (use ``except TerminalError``)."""


class SuspendedException(SdkInternalBaseException):
    """The attempt suspended: Restate resumes the invocation when progress can be made."""

    def __init__(self) -> None:
        super().__init__("invocation suspended; Restate resumes it when progress can be made")


class SdkInternalException(SdkInternalBaseException):
    """The attempt failed inside the SDK (protocol error, journal mismatch); Restate retries."""

    def __init__(self, message: str = "invocation attempt failed; Restate will retry") -> None:
        super().__init__(message)


def is_internal_exception(e: BaseException) -> bool:
    """True if ``e`` is one of the SDK's internal control-flow exceptions."""
    return isinstance(e, SdkInternalBaseException)
