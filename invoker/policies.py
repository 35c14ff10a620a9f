"""Per-handler settings from the registry: timeouts, retries, retention, output content type."""

from __future__ import annotations

from invoker import records as rec
from invoker.config import EngineConfig
from invoker.registry import Registry
from invoker.registry_model import DEFAULT_RETRY, RetryPolicy
from restate_lambda.protocol.ids import random_token


class Policies:
    """Answers "how should this invocation be treated", handler settings first, then the
    service's, then the engine's defaults."""

    def __init__(self, registry: Registry, config: EngineConfig) -> None:
        self._registry = registry
        self._config = config

    def _pick(self, inv: rec.Invocation, field: str) -> int | None:
        found = self._registry.handler(inv.service, inv.handler)
        if found is None:
            return None
        value: int | None = getattr(found[1], field)
        return value if value is not None else getattr(found[0], field)

    def attempt_timeout_s(self, inv: rec.Invocation) -> float:
        """How long one attempt may take (inactivity plus abort timeout)."""
        found = self._registry.handler(inv.service, inv.handler)
        if found is not None:
            h = found[1]
            if h.inactivity_timeout_ms is not None and h.abort_timeout_ms is not None:
                return (h.inactivity_timeout_ms + h.abort_timeout_ms) / 1000
        return self._config.attempt_timeout_s

    def inactivity_timeout_s(self, inv: rec.Invocation) -> float:
        """How long a bidirectional attempt may go without a message before the engine closes
        its side and the handler suspends (Restate's inactivity timeout, 1 minute by default)."""
        found = self._registry.handler(inv.service, inv.handler)
        if found is not None and found[1].inactivity_timeout_ms is not None:
            return found[1].inactivity_timeout_ms / 1000
        return self._config.inactivity_timeout_s

    @property
    def lease_margin_ms(self) -> int:
        """How long a lease outlives the attempt's own timeout (``EngineConfig``)."""
        return self._config.lease_margin_ms

    def lease_ms(self, inv: rec.Invocation) -> int:
        """How long a claim of ``inv`` lasts: its attempt timeout plus the lease margin."""
        return int(self.attempt_timeout_s(inv) * 1000) + self._config.lease_margin_ms

    def retention_ms(self, inv: rec.Invocation) -> int:
        """How long a completed invocation's record (its outcome) stays attachable: workflow
        retention for a workflow run, idempotency retention for an idempotent invocation,
        otherwise its journal retention."""
        if inv.handler_kind == "workflow":
            wf = self._pick(inv, "workflow_retention_ms")
            return wf if wf is not None else self._config.workflow_retention_ms
        if inv.idempotency_key:
            idem = self._pick(inv, "idempotency_retention_ms")
            return idem if idem is not None else self._config.idempotency_retention_ms
        return self.journal_retention_ms(inv)

    def journal_retention_ms(self, inv: rec.Invocation) -> int:
        """How long a completed invocation's journal is kept (never longer than its record)."""
        journal = self._pick(inv, "journal_retention_ms")
        return journal if journal is not None else self._config.journal_retention_ms

    def retry_policy(self, inv: rec.Invocation) -> RetryPolicy:
        """The retry policy of ``inv``'s handler."""
        found = self._registry.handler(inv.service, inv.handler)
        if found is not None:
            return found[1].retry_policy or found[0].retry_policy or DEFAULT_RETRY
        return DEFAULT_RETRY

    def output_content_type(self, inv: rec.Invocation, value: bytes) -> str | None:
        """The content type of ``inv``'s output ``value``."""
        found = self._registry.handler(inv.service, inv.handler)
        if found is None:
            return "application/json" if value else None
        h = found[1]
        if not value and not h.output_set_if_empty:
            return None
        return h.output_content_type

    def mark_completed(self, inv: rec.Invocation, result: rec.Result, now: int) -> None:
        """Turn ``inv`` into a completed record with ``result``, kept for its retention.

        The journal goes at the record's expiry too, unless its own retention is shorter: then
        ``journal_expires_ms`` makes the record due earlier, and the sweeper deletes only the
        journal then (:meth:`invoker.lifecycle.Lifecycle.purge_if_expired`)."""
        inv.status = rec.Status.COMPLETED
        inv.result = result
        inv.completed_ms = now
        inv.modified_ms = now
        record_ms = self.retention_ms(inv)
        journal_ms = self.journal_retention_ms(inv)
        inv.expires_ms = now + record_ms
        inv.journal_retention_ms = min(journal_ms, record_ms)
        inv.journal_expires_ms = now + journal_ms if journal_ms < record_ms else None
        inv.lease_owner = None
        inv.lease_until_ms = None
        inv.attempt_token = None
        inv.checkpoint = None
        inv.timers = []
        inv.waiting_completions = []
        inv.waiting_signals = []
        inv.waiting_named_signals = []
        if result.failure is None and result.value is not None:
            inv.output_content_type = self.output_content_type(inv, result.value)


class Leases:
    """Claims: who drives an invocation, until when."""

    def __init__(self, node_id: str, policies: Policies, *, run_locally: bool) -> None:
        self.node_id = node_id
        self._policies = policies
        self.run_locally = run_locally

    def take(self, inv: rec.Invocation, now: int) -> int:
        """Make ``inv`` RUNNING under this engine's lease (a new attempt); return the lease's
        end (its due). A lease this engine already holds is kept while it still covers the
        new attempt (see :meth:`extend`)."""
        held = inv.status == rec.Status.RUNNING and inv.lease_owner == self.node_id
        inv.status = rec.Status.RUNNING
        inv.lease_owner = self.node_id
        if not held:
            inv.lease_until_ms = None
        end = self.extend(inv, now)
        inv.attempts += 1
        inv.attempt_token = random_token(12)
        inv.checkpoint = None
        inv.last_start_ms = now
        inv.modified_ms = now
        inv.waiting_completions = []
        inv.waiting_signals = []
        inv.waiting_named_signals = []
        return end

    def extend(self, inv: rec.Invocation, now: int) -> int:
        """Renew the lease of ``inv``'s attempt in flight when what is left of it no longer
        covers a whole attempt plus half the lease margin; return its end (the record's due).

        The end moves only then (at most once per half margin, 15 s by default, of a long
        attempt), not at every step: the end is the record's due time, an indexed attribute,
        and on DynamoDB a write that changes it costs 3 write units (the table's and the due
        index's delete and put) where a write that keeps it costs 1. Every commit of the
        attempt still leaves at least ``attempt timeout + margin / 2`` of lease, so an engine
        never runs an attempt past its lease.
        """
        lease = self._policies.lease_ms(inv)
        end = inv.lease_until_ms
        if end is None or end - now < lease - self._policies.lease_margin_ms // 2:
            end = inv.lease_until_ms = now + lease
        return end

    def initial(
        self, inv: rec.Invocation, now: int, run_here: bool = False
    ) -> tuple[rec.Status, int, bool]:
        """Status, due time and whether claimed, of an invocation about to become runnable:
        claimed at once when this engine will run it itself (saves a write)."""
        if self.run_locally or run_here:
            due = self.take(inv, now)
            return rec.Status.RUNNING, due, True
        return rec.Status.READY, now, False
