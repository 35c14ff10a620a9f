"""Records the engine stores, encoded with msgspec msgpack.

Every record is a value in the item store of :mod:`backends.api`; :mod:`invoker.keys` says
where each one lives.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

import msgspec


class Status(StrEnum):
    """Invocation status, with Restate's names (``sys_invocation.status``)."""

    INBOXED = "pending"  # queued behind the lock of a virtual object key
    SCHEDULED = "scheduled"  # delayed send, not yet due
    READY = "ready"  # runnable now
    RUNNING = "running"  # an attempt is in flight (lease held)
    BACKING_OFF = "backing-off"  # waiting for the next retry
    SUSPENDED = "suspended"  # waiting for a completion or signal
    PAUSED = "paused"  # retries exhausted or paused by the admin API
    COMPLETED = "completed"


class Failure(msgspec.Struct, array_like=True, frozen=True):
    """A terminal failure: code, message and optional metadata."""

    code: int
    message: str
    metadata: dict[str, str] = {}


class Result(msgspec.Struct, array_like=True, frozen=True):
    """The outcome of a completed invocation: a value or a failure."""

    value: bytes | None = None
    failure: Failure | None = None


class CallerRef(msgspec.Struct, array_like=True, frozen=True):
    """Where a child invocation delivers its result: the caller and its completion id."""

    invocation_id: str
    completion_id: int


class TraceContext(msgspec.Struct, array_like=True, frozen=True):
    """An invocation's W3C trace context (:mod:`invoker.tracing`): its trace, the id its span
    will have (attempt spans are its children), the submitter's span and ``tracestate``."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    flags: int = 1
    parent_span_id: str | None = None
    state: str | None = None


class Invocation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The status record of one invocation (``inv/{id}`` / ``meta``)."""

    id: str
    service: str
    handler: str
    key: str | None = None
    service_kind: str = "service"  # service | virtual_object | workflow
    handler_kind: str | None = None  # exclusive | shared | workflow | None (services)
    status: Status = Status.READY
    created_ms: int = 0
    modified_ms: int = 0
    scheduled_ms: int | None = None  # execution time of a delayed invocation
    idempotency_key: str | None = None
    invoked_by: str = "ingress"  # ingress | service
    caller: CallerRef | None = None
    parent_id: str | None = None  # the invocation whose call created this one (for kill trees)
    deployment_id: str | None = None
    protocol_version: int | None = None
    journal_len: int = 0  # entries (commands + notifications) stored
    commands_len: int = 0  # commands stored (command indexes are 0-based over commands only)
    waiting_completions: list[int] = []
    waiting_signals: list[int] = []
    waiting_named_signals: list[str] = []
    retry_count: int = 0  # attempts that failed in a row
    retry_since_stored: int = 0  # failed attempts since the last stored entry
    last_stored_ms: int = 0
    next_retry_ms: int | None = None
    last_failure: Failure | None = None
    last_failure_related_command: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    random_seed: int = 0
    result: Result | None = None
    completed_ms: int | None = None
    output_content_type: str | None = None
    expires_ms: int | None = None  # when a completed invocation is purged
    idempotency_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    last_start_ms: int | None = None
    paused_by_user: bool = False
    #: Pending sleeps as (completion id, wake-up ms): a suspended invocation's record is due at
    #: the earliest, and the claim that finds one due adds its completion to the journal.
    timers: list[tuple[int, int]] = []
    last_failure_stacktrace: str | None = None
    #: Other invocations attached to this one's result (``w/`` items): its completion commit
    #: then carries a ``notify`` effect, as it does when ``caller`` is set.
    has_waiters: bool = False
    #: The running attempt's fencing token: a checkpoint (a handler making steps durable in the
    #: middle of an attempt) is accepted only with it. New for every attempt.
    attempt_token: str | None = None
    #: The last checkpoint applied: (journal index the handler asked for, index of its first
    #: own entry after the notifications returned with it, index after it). A retried request
    #: for the same index is answered from the journal.
    checkpoint: tuple[int, int, int] | None = None
    #: Set only while tracing is on (:mod:`invoker.tracing`); older records decode without it.
    trace: TraceContext | None = None
    #: When a completed invocation's journal is deleted ahead of its record (its journal
    #: retention is shorter than its idempotency or workflow retention); None once it is gone,
    #: or when it goes with the record at ``expires_ms``. Older records decode without it.
    journal_expires_ms: int | None = None
    #: The newest journal entries, kept in the record itself instead of a segment item while
    #: they fit in :data:`invoker.journal.TAIL_BUDGET_BYTES` (they follow every ``j/`` segment;
    #: see :func:`invoker.journal.append`). Older records decode without it.
    tail: list[tuple[int, bytes]] = []


def writes_state(inv: Invocation) -> bool:
    """Whether ``inv``'s handler may write state (exclusive object handlers and workflow runs)."""
    exclusive = inv.service_kind == "virtual_object" and inv.handler_kind == "exclusive"
    return exclusive or inv.handler_kind == "workflow"


def past_retention(inv: Invocation, now_ms: int) -> bool:
    """Whether ``inv`` completed and its retention ended: to clients it is gone (Restate
    forgets it then), even while its record is still stored (DynamoDB deletes an expired item
    within days, the sweeper purges at its next pass)."""
    return (
        inv.status == Status.COMPLETED and inv.expires_ms is not None and inv.expires_ms <= now_ms
    )


def due_of(inv: Invocation) -> int | None:
    """When the sweeper must look at an invocation's record next, by its status."""
    status = inv.status
    if status == Status.RUNNING:
        return inv.lease_until_ms
    if status == Status.SUSPENDED:
        return min((wake for _cid, wake in inv.timers), default=None)
    if status == Status.SCHEDULED:
        return inv.scheduled_ms
    if status == Status.BACKING_OFF:
        return inv.next_retry_ms
    if status == Status.READY:
        return inv.modified_ms
    if status == Status.COMPLETED:
        if inv.journal_expires_ms is not None and inv.expires_ms is not None:
            return min(inv.journal_expires_ms, inv.expires_ms)
        return inv.expires_ms
    return None  # queued behind a lock, or paused


class LockRecord(msgspec.Struct, array_like=True):
    """Exclusive lock and FIFO inbox counters of one virtual object key (``obj/..`` / ``lock``)."""

    holder: str | None = None
    head: int = 0  # next inbox sequence to dequeue
    tail: int = 0  # next inbox sequence to allocate


class PromiseWaiter(msgspec.Struct, array_like=True, frozen=True):
    """An invocation waiting on a durable promise, and how it peeked or awaited."""

    invocation_id: str
    completion_id: int


class PromiseRecord(msgspec.Struct, array_like=True):
    """A workflow's durable promise (``obj/..`` / ``p/{name}``)."""

    result: Result | None = None
    waiters: list[PromiseWaiter] = []
    completed_by: str | None = None  # "{invocation id}/{completion id}" of the completer


class PendingNotification(msgspec.Struct, array_like=True, frozen=True):
    """A notification waiting to enter an invocation's journal (``inv/..`` / ``n/...``)."""

    arrived_ms: int
    msg_type: int
    payload: bytes


class Effect(msgspec.Struct, array_like=True, frozen=True):
    """An effect on another record, applied after the commit that wrote it.

    ``kind`` is one of: ``create`` (a child invocation; ``data`` is an encoded
    :class:`ChildSpec`), ``signal`` / ``awakeable`` (deliver an encoded :class:`SignalSpec`),
    ``promise`` (get/peek/complete a promise: :class:`PromiseOp`), ``attach`` (wait for or read
    another invocation's result: :class:`AttachOp`), ``release`` (pass a virtual object's lock
    on: :class:`ReleaseOp`), ``notify`` (tell the caller and attached invocations that this
    invocation completed; no data), ``kill_children`` (kill the calls this invocation made).
    """

    kind: str
    data: bytes = b""


class OutboxRecord(msgspec.Struct, array_like=True):
    """The outbox item of one commit (``inv/..`` / ``o/{meta version}``): its effects, in order.

    Applied right after the commit by the engine that made it, or by the sweeper when the item
    falls due (``recovery_grace_ms`` after the commit, then with backoff after each failed try).
    ``done`` effects are skipped on a later try; after ``max_outbox_tries`` failed tries the
    item is *dead*: kept, no longer due, and listed by the admin API until retried.
    """

    effects: list[Effect]
    done: int = 0
    tries: int = 0
    error: str | None = None
    dead: bool = False


class ChildSpec(msgspec.Struct, array_like=True, frozen=True):
    """Everything needed to create a child invocation exactly once."""

    invocation_id: str
    service: str
    handler: str
    key: str | None
    parameter: bytes
    headers: list[tuple[str, str]]
    idempotency_key: str | None
    invoke_time_ms: int | None
    caller: CallerRef | None  # None for one-way sends
    parent_id: str


class SignalSpec(msgspec.Struct, array_like=True, frozen=True):
    """A signal for another invocation: built-in index or name, and a value or failure."""

    target: str
    idx: int | None
    name: str | None
    value: bytes | None
    failure: Failure | None


class PromiseOp(msgspec.Struct, array_like=True, frozen=True):
    """get / peek / complete of a workflow promise by an invocation."""

    op: str  # get | peek | complete
    service: str
    key: str
    name: str
    invocation_id: str
    completion_id: int
    value: bytes | None = None
    failure: Failure | None = None


class AttachOp(msgspec.Struct, array_like=True, frozen=True):
    """Attach to (wait for) or read the output of another invocation."""

    op: str  # attach | output
    target: str
    invocation_id: str
    completion_id: int


class ReleaseOp(msgspec.Struct, array_like=True, frozen=True):
    """Release the exclusive lock of ``service``/``key`` held by ``holder``."""

    service: str
    key: str
    holder: str


class StateRecord(msgspec.Struct, array_like=True):
    """The K/V state of one object or workflow instance (``obj/..`` / ``state``)."""

    entries: dict[str, bytes] = {}


class ScheduleRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A durable cron schedule (``sched/{id}`` / ``meta``), due at its next tick.

    Firing a tick is one commit: this record's compare-and-set advancing ``next_ms``, and the
    creation outbox item of the tick's invocation, whose id derives from the tick (the
    idempotency key ``schedule/{id}/{tick_ms}``). However many sweepers race, one wins per tick.
    """

    id: str
    cron: str
    timezone: str = "UTC"
    service: str
    handler: str
    key: str | None = None
    body: bytes = b""
    content_type: str | None = None
    #: ``catch-up``: fire missed ticks, oldest first, at most ``max_catch_up`` of them (older
    #: ones are skipped); ``skip``: fire only the latest missed tick.
    missed_ticks: str = "catch-up"
    max_catch_up: int = 100
    paused: bool = False
    next_ms: int | None = None  # the next tick to fire
    last_tick_ms: int | None = None
    last_invocation_id: str | None = None
    fired: int = 0
    skipped: int = 0
    #: ``api`` (admin API / CLI) or ``code`` (declared in a handler's metadata; kept in step
    #: with the registered deployments).
    origin: str = "api"
    created_ms: int = 0
    modified_ms: int = 0


class SubscriptionRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An event subscription (``subscriptions`` / ``sub/{id}``): Restate's shape."""

    id: str
    source: str
    sink: str
    options: dict[str, str] = {}
    created_ms: int = 0


_encoder = msgspec.msgpack.Encoder()
T = TypeVar("T")


def encode(record: Any) -> bytes:
    """Encode a record with msgpack."""
    return _encoder.encode(record)


_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def decode(data: bytes, kind: type[T]) -> T:
    """Decode a record of type ``kind``."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    result: T = decoder.decode(data)
    return result
