"""The commit point: every change the engine makes to the store goes through :class:`Committer`.

A *commit* is one atomic batch of the backend (:meth:`backends.api.Backend.write`). Batches that
change an invocation are *fenced*: their first operation is the compare-and-set (or check) of
that invocation's record, so a commit applies only on top of the state it was computed from.

What a commit means is decided here and nowhere else:

* **Applied** (``write`` returns): everything in the batch is durable, including the outbox
  item that carries whatever must follow it. Nothing done after a commit can undo it.
* **Conflict** (:class:`~backends.api.ConflictError`): nothing was applied; the caller re-reads
  and decides again. ``index`` names the operation that lost.
* **Unknown** (:class:`CommitUnknownError`): storage failed and kept failing; the batch may or
  may not be applied. The caller drops what it holds in memory and re-reads later.

Transient failures (a timeout, throttling, a lost response) are retried with the same batch.
That is safe because a fenced batch can apply at most once: when a retry conflicts on the fence
and the stored record is byte-for-byte the one this batch wrote, the earlier try applied and the
commit counts as applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from backends.api import (
    Backend,
    BackendError,
    ConflictError,
    Delete,
    Put,
    ValueTooLargeError,
    WriteOp,
)
from invoker.api import UnavailableError
from invoker.notify_watch import NotificationWatch

log = logging.getLogger("restate_lambda.commit")


class CommitUnknownError(UnavailableError):
    """A write kept failing: it may or may not have been applied (a client gets 503)."""


class CommitTooLargeError(ValueError):
    """A batch holds more operations than the backend applies atomically."""


class Committer:
    """Writes batches atomically, resolving lost responses by reading the fence back.

    Args:
        backend: the store.
        retries: extra tries after a transient failure.
        retry_delay_s: first pause between tries (doubled each time).
        sleep: injected for tests.
        watch: told of every write's end (a sole engine's :class:`NotificationWatch`).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        retries: int = 3,
        retry_delay_s: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        watch: NotificationWatch | None = None,
    ) -> None:
        self.backend = backend
        self._watch = watch
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._sleep = sleep

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically (see the module docstring for the three outcomes).

        Raises:
            ConflictError: a condition failed; nothing was applied.
            CommitUnknownError: storage kept failing; the batch may be applied.
            CommitTooLargeError: more operations than the backend's ``max_batch_ops``.
            ValueTooLargeError: a value the backend cannot store.
        """
        if len(ops) > self.backend.max_batch_ops:
            raise CommitTooLargeError(
                f"a commit of {len(ops)} writes exceeds the store's limit of "
                f"{self.backend.max_batch_ops} per atomic batch"
            )
        known = False  # whether the write applied or certainly did not (for the watch)
        try:
            await self._write(ops)
            known = True
        except ConflictError:
            known = True
            raise
        finally:
            if self._watch is not None:
                self._watch.ended(ops, known=known)

    async def _write(self, ops: Sequence[WriteOp]) -> None:
        delay = self.retry_delay_s
        failed: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                await self.backend.write(ops)
                return
            except ConflictError as exc:
                if failed is not None and await self._applied_before(ops, exc):
                    return
                raise
            except (ValueTooLargeError, ValueError):
                raise
            except (BackendError, OSError, TimeoutError) as exc:
                failed = exc
                log.warning(
                    "storage write failed (try %d of %d): %r", attempt + 1, self.retries + 1, exc
                )
            if attempt < self.retries:
                await self._sleep(delay)
                delay *= 2
        raise CommitUnknownError(f"storage write failed {self.retries + 1} times: {failed!r}")

    async def _applied_before(self, ops: Sequence[WriteOp], exc: ConflictError) -> bool:
        """After a lost response, was it our own earlier try that applied?

        Only a conflict on the fence (operation 0) can tell: a Put fence stored byte for byte
        means our batch applied; a Delete fence that finds the item gone likewise.
        """
        if exc.index != 0 or not ops:
            return False
        fence = ops[0]
        try:
            item = await self.backend.get(fence.pk, fence.sk)
        except BackendError:
            return False
        if isinstance(fence, Put):
            expected_version = (fence.expect or 0) + 1
            return (
                item is not None
                and item.version == expected_version
                and bytes(item.value) == bytes(fence.value)
            )
        if isinstance(fence, Delete):
            return item is None
        return False

    async def delete_garbage(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete items nothing can reach any more (see :meth:`Backend.delete_items`)."""
        if not keys:
            return
        delay = self.retry_delay_s
        for attempt in range(self.retries + 1):
            try:
                await self.backend.delete_items(keys)
                return
            except (BackendError, OSError, TimeoutError) as exc:
                if attempt == self.retries:
                    raise CommitUnknownError(f"deleting garbage failed: {exc!r}") from exc
            await self._sleep(delay)
            delay *= 2
