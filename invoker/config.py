"""Engine settings."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the engine; defaults follow Restate 1.7 where it has one."""

    max_body_bytes: int = 32 * 1024 * 1024
    lease_ms: int = 3 * 60_000  # how long an attempt owns an invocation before others may take it
    attempt_timeout_s: float = 120.0  # inactivity + abort timeout of one request-response attempt
    recovery_grace_ms: int = 10_000  # delay before the sweeper retries work a crash may have left
    idempotency_retention_ms: int = DAY_MS
    journal_retention_ms: int = DAY_MS
    workflow_retention_ms: int = DAY_MS
    max_concurrent_attempts: int = 512
    sweep_batch: int = 256
    sweep_interval_s: float = 1.0
