"""What the engine's parts need from each other, as small interfaces.

The parts are wired together by :class:`invoker.engine.Engine`; each takes the others it needs
through its constructor, typed by these protocols where a concrete import would close a circle
(the drivers run attempts whose commits create work the drivers then run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from backends.api import Check, Put, WriteOp
from invoker import records as rec
from invoker.processing import Entry


@dataclass(slots=True)
class DeferredLock:
    """The key's lock of an exclusive invocation whose creation is deferred to its first commit
    (see :meth:`invoker.locks.ObjectLocks.enqueue`): that commit takes the lock (``take``),
    unless it completes the invocation, which then only needs the lock still free as it was
    read."""

    take: Put
    #: Ends the reservation: True once a commit took the lock, False once one only checked it,
    #: None when nothing is known to be stored (only the first call counts).
    release: Callable[[bool | None], None]

    def op(self, completing: bool) -> WriteOp:
        """The write of the first commit: a check when it completes the invocation."""
        if completing:
            return Check(self.take.pk, self.take.sk, self.take.expect or 0)
        return self.take


@dataclass(slots=True)
class Claimed:
    """An invocation this engine holds the lease of, with its journal in memory."""

    inv: rec.Invocation
    version: int
    entries: list[Entry]
    #: Writes that create the invocation, deferred to its first commit (a blocking call with a
    #: random id: nothing was acknowledged before that commit). Cleared once a commit applied.
    unsaved: list[WriteOp] | None = None
    #: Set once a commit completing the invocation applied: nothing may change it after that.
    done: bool = False
    #: An exclusive invocation's lock, taken by its deferred creation (with ``unsaved``).
    deferred_lock: DeferredLock | None = None

    def creation(self, ops: Sequence[WriteOp], *, completing: bool = False) -> list[WriteOp]:
        """``ops`` (fence first) followed by the deferred creation writes, if any.

        ``completing``: this commit completes the invocation (a deferred lock is then only
        checked, never taken).
        """
        out = [*ops, *(self.unsaved or [])]
        if self.unsaved is not None and self.deferred_lock is not None:
            out.append(self.deferred_lock.op(completing))
        return out

    def saved(self) -> None:
        """A commit applied: the invocation is stored, with its lock unless that commit
        completed it (then the lock was only checked, see :meth:`DeferredLock.op`)."""
        if self.unsaved is not None and self.deferred_lock is not None:
            self.deferred_lock.release(self.inv.status != rec.Status.COMPLETED)
        self.unsaved = None


class Dispatch(Protocol):
    """Makes sure invocations get driven (implemented by :class:`invoker.drivers.Drivers`)."""

    def dispatch(self, inv_id: str, claimed: Claimed | None = None) -> None:
        """Drive ``inv_id`` soon; ``claimed``: this engine already holds its lease."""
        ...

    def due_at(self, inv_id: str, due_ms: int) -> None:
        """Something of ``inv_id`` falls due at ``due_ms`` (wake the timer loop / dispatcher)."""
        ...


class EffectApplier(Protocol):
    """Applies one outbox effect (implemented by :class:`invoker.effects.Effects`)."""

    async def apply(self, inv_id: str, effect: rec.Effect, origin: str) -> None:
        """Apply ``effect`` written by invocation ``inv_id``; idempotent; raise to retry.

        ``origin`` names the effect uniquely and stably (outbox item and position), for effects
        that need a deduplication key of their own.
        """
        ...


class Dispatcher(Protocol):
    """Hands invocations to whichever process will drive them (an SQS queue on AWS)."""

    async def dispatch(self, inv_id: str) -> None:
        """Have ``inv_id`` driven as soon as possible."""
        ...

    async def schedule(self, inv_id: str, due_ms: int) -> None:
        """Have ``inv_id`` looked at again at ``due_ms`` (may do nothing if too far ahead)."""
        ...
