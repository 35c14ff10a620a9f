"""The storage contract every backend implements.

The store is a sorted key-value map of *items* addressed by ``(pk, sk)``: a partition key and a
sort key, both strings compared as UTF-8 bytes. This is DynamoDB's single-table shape, so the
same engine code runs on SQLite, in memory, and on DynamoDB without a translation layer.

Rules every backend follows (the conformance suite in ``tests/backends`` checks each one):

* **Versions.** Every stored item carries a ``version`` >= 1. A put stores ``version + 1`` of
  the item it replaces (1 for a new item).
* **Conditional writes.** ``Put.expect`` / ``Delete.expect`` / ``Check.expect``:
  ``0`` means "the item must not exist"; ``n > 0`` means "the item must exist with version n";
  ``None`` means "no condition on this item". Unconditioned operations are only allowed in a
  batch that also carries a conditional operation which fences it (the engine fences every
  batch with the compare-and-set of the invocation record that produced it).
* **Atomic batches.** :meth:`Backend.write` applies all of its operations or none. A failed
  condition raises :class:`ConflictError` whose ``index`` names the first failing operation;
  nothing of the batch is then visible. A batch never names the same ``(pk, sk)`` twice.
* **Read your writes.** Once ``write`` returns, every later ``get``/``query``/``due`` in any
  process sees it. ``write`` returns only after the batch is durable (survives ``kill -9``).
* **Due index.** An item written with ``due_ms`` set appears in :meth:`Backend.due` until it is
  deleted or rewritten without ``due_ms``. The engine uses it for timers, retry backoff,
  delayed invocations and lease expiry.
* **Opaque values.** Values are bytes; backends never decode them. Large values may be offloaded
  to a blob store by the backend transparently (``max_value_bytes`` says what one item holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias


class BackendError(Exception):
    """Base class of storage errors."""


class ConflictError(BackendError):
    """A conditional write lost: re-read and decide again, never retry blindly.

    Attributes:
        index: position in the batch of the first operation whose condition failed,
            or ``None`` when the backend cannot tell.
    """

    def __init__(self, message: str = "conditional write failed", index: int | None = None):
        super().__init__(message)
        self.index = index


class BackendUnavailableError(BackendError):
    """A transient storage failure (throttling, timeout, network); the caller may retry."""


class ValueTooLargeError(BackendError):
    """A value exceeds what this backend can store, even with offloading."""


@dataclass(frozen=True, slots=True)
class Item:
    """One stored item."""

    pk: str
    sk: str
    value: bytes
    version: int
    due_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Put:
    """Create or replace an item.

    ``expect``: 0 = must not exist, n = must exist with version n, None = unconditional.
    """

    pk: str
    sk: str
    value: bytes
    expect: int | None = 0
    due_ms: int | None = None
    #: A hint, honoured by backends with ``supports_expiry``: the item may be deleted by the
    #: store at any time after this (DynamoDB TTL: free deletion, hours of lag). Reads may
    #: return it until then; nothing else about the item changes.
    expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete an item.

    ``expect``: n = must exist with version n; None = delete if present; 0 = must not exist
    (so it deletes nothing, like a ``Check``).
    """

    pk: str
    sk: str
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """Write nothing; fail the batch unless the condition holds (0 = absent, n = version n)."""

    pk: str
    sk: str
    expect: int


WriteOp: TypeAlias = Put | Delete | Check


class Backend(Protocol):
    """Async storage used by the engine. One instance is shared by all tasks of a process."""

    #: Largest value one item stores inline (bigger ones are offloaded or rejected).
    max_value_bytes: int
    #: Most operations one atomic :meth:`write` accepts.
    max_batch_ops: int
    #: Whether the store deletes items past ``Put.expires_ms`` by itself (DynamoDB TTL).
    supports_expiry: bool

    async def get(self, pk: str, sk: str) -> Item | None:
        """Return the item, or ``None``. Strongly consistent."""
        ...

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """Items of partition ``pk`` whose sort key starts with ``prefix``, ordered by sort key.

        ``after`` (exclusive) continues a previous page; ``reverse`` orders descending (``after``
        then means "before"). Strongly consistent.
        """
        ...

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically and durably, or raise :class:`ConflictError` and apply none.

        Raises:
            ConflictError: a condition failed (``index`` names the operation).
            ValueError: the batch is empty, too large, or names an item twice, or a key is not
                valid Unicode (a lone surrogate cannot be encoded as UTF-8).
            ValueTooLargeError: a value is too large for this backend.

        If the awaiting task is cancelled, the batch may still be applied.
        """
        ...

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """Items with ``due_ms <= until_ms``, ordered by ``(due_ms, pk, sk)``, at most ``limit``.

        May lag behind writes on backends with eventually consistent indexes; callers re-read
        the item before acting on it.
        """
        ...

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the items at ``keys`` (absent ones are ignored), without conditions.

        Not atomic: an error may leave some deleted. Only for garbage, i.e. items that nothing
        can write again once a conditional write fenced them off (the engine deletes a completed
        invocation's record conditionally first, then its other items with this). Cheaper than
        :meth:`write` on DynamoDB (a non-transactional BatchWriteItem: half the write units).
        """
        ...

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """All items whose pk starts with ``pk_prefix`` and whose sort key equals ``sk``.

        For admin listings only (a full scan on some backends); order is by pk.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...
