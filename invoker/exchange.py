"""What crosses between the engine and a deployment: one HTTP-shaped exchange.

Shared by every transport (:mod:`invoker.transport`, :mod:`invoker.lambda_transport`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class TransportError(Exception):
    """The deployment could not be reached or broke the exchange (retryable).

    A subclass with ``terminal = True`` (e.g. a request Lambda can never accept) fails the
    invocation with ``code`` instead of retrying it.
    """

    terminal: bool = False
    code: int = 503


@dataclass(slots=True)
class Exchange:
    """One HTTP-shaped request to a deployment."""

    method: str
    path: str  # e.g. "/invoke/Greeter/greet" (appended to the deployment's base)
    headers: dict[str, str]
    body: bytes = b""
    timeout_s: float = 60.0
    #: Lambda deployments only: the IAM role to assume for ``Invoke`` (cross-account).
    assume_role_arn: str | None = None
    #: Request compression the deployment accepts (``"zstd"``, from its manifest), or None.
    compression: str | None = None
    #: A reply body longer than this fails the exchange (:class:`TransportError`).
    max_response_bytes: int = 32 * 1024 * 1024
    #: In-process deployments only: the checkpoint channel offered to the handler, as
    #: (checkpointer, attempt token); see :mod:`restate_lambda.checkpoint`.
    checkpoint: tuple[Any, str] | None = None


@dataclass(slots=True)
class Reply:
    """The deployment's answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ResponseTooLargeError(Exception):
    """A deployment's reply is over :attr:`Exchange.max_response_bytes`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the deployment's response of at least {size} bytes is over the limit of {limit} bytes"
        )


class Transport(Protocol):
    """Carries exchanges to one kind of deployment address."""

    async def exchange(self, address: str, request: Exchange) -> Reply:
        """Send ``request`` to the deployment at ``address`` and return its reply."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
