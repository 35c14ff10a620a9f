"""What an endpoint serves and how: its services and protocol options.

:class:`~restate_lambda.endpoint.Endpoint` (the user-facing builder) extends it; the transports
(:mod:`restate_lambda.asgi`, :mod:`restate_lambda.aws_lambda`) only need this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from restate_lambda.checkpoint import Checkpointer
    from restate_lambda.deadline import DeadlinePolicy
    from restate_lambda.identity import IdentityVerifier
    from restate_lambda.service import AnyService


class EndpointConfig:
    """The services of an endpoint and its protocol options.

    - ``protocol``: force ``"bidi"`` or ``"request_response"`` (default: bidi over HTTP/2);
    - ``checkpointer``: the checkpoint channel used when a request offers one with a token but
      no URL (default: POST to the request's ``x-restate-checkpoint-url``);
    - ``eager_runs``: in request-response mode *without* a checkpoint channel, continue with a
      ``ctx.run`` value before it is journaled instead of suspending. Weaker (a failed attempt
      runs the step again and may draw a different value); off by default;
    - ``deadline``: on AWS Lambda, stop at a step boundary this close to the deadline
      (``"default"``: ``DeadlinePolicy()``, 5 s or 10 % of the budget; ``None``: never).
    """

    def __init__(self) -> None:
        self.services: dict[str, AnyService] = {}
        self.protocol: Literal["bidi", "request_response"] | None = None
        self.identity_keys: list[str] = []
        self.checkpointer: Checkpointer | None = None
        self.eager_runs = False
        self.deadline: DeadlinePolicy | Literal["default"] | None = "default"
        self._verifier: IdentityVerifier | None = None

    def verifier(self) -> IdentityVerifier:
        """The request-identity verifier for the configured keys."""
        if self._verifier is None:
            from restate_lambda.identity import IdentityVerifier

            self._verifier = IdentityVerifier(self.identity_keys)
        return self._verifier
