"""Engine settings.

Every field can be set from the environment of ``restate-lambda dev`` and of the Lambda entry
points: ``RESTATE_LAMBDA_`` + the field's name in capitals (``RESTATE_LAMBDA_ATTEMPT_TIMEOUT_S=30``,
``RESTATE_LAMBDA_LEASE_MARGIN_MS=5000``); see :meth:`EngineConfig.from_env`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the engine; defaults follow Restate 1.7 where it has one."""

    max_body_bytes: int = 32 * 1024 * 1024
    #: Largest response body read from a deployment (a bigger one fails the attempt).
    max_response_bytes: int = 32 * 1024 * 1024
    #: Time an attempt's lease outlives the attempt's own timeout: covers the commit after the
    #: deployment answered and clock skew between engines. The lease is the attempt's timeout
    #: plus this, so an engine never runs an attempt past its lease.
    lease_margin_ms: int = 30_000
    attempt_timeout_s: float = 120.0  # inactivity + abort timeout of one request-response attempt
    #: A bidirectional (HTTP/2) attempt without a message for this long is asked to suspend.
    inactivity_timeout_s: float = 60.0
    recovery_grace_ms: int = 10_000  # delay before the sweeper retries work a crash may have left
    idempotency_retention_ms: int = DAY_MS
    journal_retention_ms: int = DAY_MS
    workflow_retention_ms: int = DAY_MS
    max_concurrent_attempts: int = 512
    sweep_batch: int = 256
    sweep_interval_s: float = 1.0
    #: Outbox items: first retry after this, doubling up to ``outbox_max_backoff_ms``; dead
    #: (kept, listed by the admin API, no longer retried) after ``max_outbox_tries`` failures.
    outbox_initial_backoff_ms: int = 1_000
    outbox_max_backoff_ms: int = 10 * 60_000
    max_outbox_tries: int = 20
    #: Transient storage errors: a write is retried this many times before the operation fails.
    write_retries: int = 3
    write_retry_delay_s: float = 0.05
    #: A client waiting for an invocation another engine runs polls the store, starting at
    #: this interval and doubling up to 5 s.
    outcome_poll_s: float = 0.5
    #: Where handlers outside this process send checkpoints (the ingress's
    #: ``/restate-lambda/checkpoint``); None: only in-process handlers get the channel.
    checkpoint_url: str | None = None
    #: How often an engine checks the store for deployments registered by other engines.
    registry_refresh_ms: int = 2_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineConfig:
        """The defaults, overridden by ``RESTATE_LAMBDA_<FIELD>`` variables.

        Raises:
            ValueError: a variable that is not a number (naming the variable).
        """
        env = os.environ if environ is None else environ
        changes: dict[str, int | float | str] = {}
        for f in dataclasses.fields(cls):
            name = f"RESTATE_LAMBDA_{f.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if "str" in str(f.type):
                changes[f.name] = raw
                continue
            kind = float if f.type in ("float", float) else int
            try:
                changes[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(
                    f"{name}={raw!r} is not a{'' if kind is int else ' decimal'} number"
                ) from exc
        return dataclasses.replace(cls(), **changes)  # type: ignore[arg-type]
