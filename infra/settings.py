"""Settings of the AWS Lambda entry points, read from environment variables.

==========================================  =================================================
``RESTATE_LAMBDA_STORAGE``                  storage URL (required), e.g.
                                            ``dynamodb://TABLE?region=eu-west-1&bucket=BUCKET``
``RESTATE_LAMBDA_QUEUE_URL``                SQS work queue (required by ingress, worker,
                                            sweeper and admin: they dispatch through it)
``AWS_REGION`` / ``AWS_DEFAULT_REGION``     region of the queue's client (Lambda sets it)
``RESTATE_LAMBDA_MAX_BODY_BYTES``           largest ingress request body (default 4 MiB: an
                                            API Gateway event carries at most 6 MB, base64)
``RESTATE_LAMBDA_INLINE_CALLS``             ``1`` (default): a blocking ingress call runs its
                                            invocation inside the ingress Lambda; ``0``:
                                            through the queue like sends
``RESTATE_LAMBDA_CALL_DEADLINE_S``          a blocking call waits at most this long (default
                                            28: API Gateway ends integrations at 29 s) or the
                                            function's time left, then answers 504 with the
                                            invocation id; the invocation was stored before it
                                            ran and goes on (attach to it)
``RESTATE_LAMBDA_SWEEP_LOOKAHEAD_S``        the sweeper schedules SQS wake-ups for work due
                                            within this many seconds (default 70)
``RESTATE_LAMBDA_ASSUME_ROLE_EXTERNAL_ID``  ``ExternalId`` for deployments with an
                                            assume-role ARN
``RESTATE_LAMBDA_SQS_ENDPOINT_URL``,        endpoints for local testing (moto, the local
``RESTATE_LAMBDA_LAMBDA_ENDPOINT_URL``,     Invoke endpoint); unset on AWS
``RESTATE_LAMBDA_STS_ENDPOINT_URL``
``RESTATE_LAMBDA_LOG_LEVEL``                logging level (default ``INFO``)
``RESTATE_LAMBDA_LOG_FORMAT``               ``json``: one JSON object per log line (see
                                            :mod:`infra.logging_setup`); default ``text``
``RESTATE_LAMBDA_MAX_HEADERS``              most request headers at the ingress (default 100;
                                            431 beyond)
``RESTATE_LAMBDA_MAX_HEADER_BYTES``         most bytes of all headers (default 65536; 431)
``RESTATE_LAMBDA_MAX_URL_BYTES``            longest path and query (default 8192; 414)
``RESTATE_LAMBDA_MAX_KEY_BYTES``            longest object/workflow/idempotency key, UTF-8
                                            (default 1024; 400)
``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY``     the key requests to deployments are signed with
                                            (``ssm:/NAME``, a PEM file or the PEM; see
                                            :mod:`infra.identity_keys`); unset: unsigned
``RESTATE_LAMBDA_SSM_ENDPOINT_URL``         SSM endpoint for local testing; unset on AWS
``RESTATE_LAMBDA_CHECKPOINT_URL``           the checkpoint channel offered to handlers (see
                                            :mod:`infra.checkpoint_events`): a Lambda function
                                            ARN or an HTTP URL; ``off``: none (they suspend
                                            after each run); unset: the ARN of the function
                                            running the attempt
==========================================  =================================================

The admin API of ``restate-lambda dev`` (:class:`AdminSettings`):

==========================================  =================================================
``RESTATE_LAMBDA_ADMIN_TOKEN``              bearer token the admin API requires (every route
                                            but ``GET /health`` and the web UI's static
                                            shell, ``/ui``); mandatory when it listens on
                                            a non-loopback address
``RESTATE_LAMBDA_ADMIN_ALLOWED_HOSTS``      comma-separated ``Host`` names accepted besides
                                            loopback ones (DNS-rebinding protection)
==========================================  =================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ingress.limits import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_KEY_BYTES,
    DEFAULT_MAX_URL_BYTES,
    IngressLimits,
)

#: Largest ingress body by default: an API Gateway / Function URL event is at most 6 MB and
#: carries the body in base64 (4/3 larger) next to headers.
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class SettingsError(ValueError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Everything the Lambda entry points are configured with."""

    storage: str
    queue_url: str | None = None
    region: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    inline_calls: bool = True
    #: How long a blocking ingress call may wait (API Gateway integrations end at 29 s).
    call_deadline_s: int = 28
    sweep_lookahead_ms: int = 70_000
    assume_role_external_id: str | None = None
    sqs_endpoint_url: str | None = None
    lambda_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    log_level: str = "INFO"
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    request_identity_key: str | None = None
    #: ``RESTATE_LAMBDA_CHECKPOINT_URL`` as given (None: unset; see :meth:`checkpoint_target`).
    checkpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsSettings:
        """Read the settings from ``env`` (default ``os.environ``).

        Raises:
            SettingsError: ``RESTATE_LAMBDA_STORAGE`` is missing, or a number is malformed.
        """
        env = os.environ if env is None else env

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: int) -> int:
            raw = opt(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
            return value

        storage = opt("RESTATE_LAMBDA_STORAGE")
        if storage is None:
            raise SettingsError(
                "RESTATE_LAMBDA_STORAGE is not set: give the storage URL, e.g. "
                "dynamodb://TABLE?region=us-east-1&bucket=BUCKET"
            )
        inline = (opt("RESTATE_LAMBDA_INLINE_CALLS") or "1").lower()
        return cls(
            storage=storage,
            queue_url=opt("RESTATE_LAMBDA_QUEUE_URL"),
            region=opt("AWS_REGION") or opt("AWS_DEFAULT_REGION"),
            max_body_bytes=number("RESTATE_LAMBDA_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            inline_calls=inline not in ("0", "false", "no", "off"),
            call_deadline_s=number("RESTATE_LAMBDA_CALL_DEADLINE_S", 28),
            sweep_lookahead_ms=number("RESTATE_LAMBDA_SWEEP_LOOKAHEAD_S", 70) * 1000,
            assume_role_external_id=opt("RESTATE_LAMBDA_ASSUME_ROLE_EXTERNAL_ID"),
            sqs_endpoint_url=opt("RESTATE_LAMBDA_SQS_ENDPOINT_URL"),
            lambda_endpoint_url=opt("RESTATE_LAMBDA_LAMBDA_ENDPOINT_URL"),
            sts_endpoint_url=opt("RESTATE_LAMBDA_STS_ENDPOINT_URL"),
            log_level=(opt("RESTATE_LAMBDA_LOG_LEVEL") or "INFO").upper(),
            max_headers=number("RESTATE_LAMBDA_MAX_HEADERS", DEFAULT_MAX_HEADERS),
            max_header_bytes=number("RESTATE_LAMBDA_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
            max_url_bytes=number("RESTATE_LAMBDA_MAX_URL_BYTES", DEFAULT_MAX_URL_BYTES),
            max_key_bytes=number("RESTATE_LAMBDA_MAX_KEY_BYTES", DEFAULT_MAX_KEY_BYTES),
            request_identity_key=opt("RESTATE_LAMBDA_REQUEST_IDENTITY_KEY"),
            checkpoint_url=opt("RESTATE_LAMBDA_CHECKPOINT_URL"),
        )

    def checkpoint_target(self, function_arn: str | None) -> str | None:
        """The checkpoint URL to offer handlers: ``RESTATE_LAMBDA_CHECKPOINT_URL``, None when
        it is ``off``, else ``function_arn`` (the ARN of the function running the attempt)."""
        if self.checkpoint_url is None:
            return function_arn
        if self.checkpoint_url.lower() in ("off", "none", "0", "false", "no"):
            return None
        return self.checkpoint_url

    def ingress_limits(self) -> IngressLimits:
        """The ingress's bounds from these settings."""
        return IngressLimits(
            max_body_bytes=self.max_body_bytes,
            max_headers=self.max_headers,
            max_header_bytes=self.max_header_bytes,
            max_url_bytes=self.max_url_bytes,
            max_key_bytes=self.max_key_bytes,
        )

    def require_queue(self) -> str:
        """The queue URL, or a clear error."""
        if self.queue_url is None:
            raise SettingsError(
                "RESTATE_LAMBDA_QUEUE_URL is not set: the Lambda entry points dispatch work "
                "through an SQS queue"
            )
        return self.queue_url


def _split_names(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """Who may use the admin API of ``restate-lambda dev`` (see :mod:`ingress.admin_security`)."""

    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AdminSettings:
        """``RESTATE_LAMBDA_ADMIN_TOKEN`` and ``RESTATE_LAMBDA_ADMIN_ALLOWED_HOSTS``."""
        env = os.environ if env is None else env
        token = env.get("RESTATE_LAMBDA_ADMIN_TOKEN", "").strip() or None
        return cls(
            token=token, allowed_hosts=_split_names(env.get("RESTATE_LAMBDA_ADMIN_ALLOWED_HOSTS"))
        )


def ingress_limits_from_env(env: Mapping[str, str] | None = None) -> IngressLimits:
    """The ingress's header, URL and key bounds from ``RESTATE_LAMBDA_MAX_*`` (body limit
    left at its default: the engine's configuration decides it)."""
    env = os.environ if env is None else env
    settings = AwsSettings.from_env({**env, "RESTATE_LAMBDA_STORAGE": "unused://"})
    return IngressLimits(
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        max_url_bytes=settings.max_url_bytes,
        max_key_bytes=settings.max_key_bytes,
    )
