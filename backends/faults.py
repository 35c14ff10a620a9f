"""A fault-injecting wrapper around any backend, to prove recovery at every write point.

:class:`FaultyBackend` passes every call to the backend it wraps and numbers the *write points*
on the way: each call of ``write`` and ``delete_items`` (and, with ``FaultPlan.count_reads``, of
``get``, ``query``, ``due`` and ``scan``) gets the next index, 0, 1, 2, ... in the order the calls
arrive. A :class:`FaultPlan` names what happens at chosen indexes:

===================  ===========================================================================
``fail``             raise :class:`~backends.api.BackendUnavailableError` before the call reaches
                     the inner backend: nothing is applied (a refused or throttled request)
``ambiguous``        apply the call, then raise ``BackendUnavailableError``: the response was lost
``crash-before``     raise :class:`Crashed` without applying: the process died before the request
``crash-after``      apply, then raise :class:`Crashed`: the process died right after the request
===================  ===========================================================================

After a crash every later call on the wrapper raises :class:`Crashed` too (the process is dead),
except :meth:`FaultyBackend.close`. The inner backend is untouched and stays open, so a test builds
a new engine on it (or on a new ``FaultyBackend`` around it) to recover, and then checks its
invariants. :class:`Crashed` derives from ``BaseException``, so the engine's ordinary
``except Exception`` handlers do not swallow it.

Every write point is recorded in :attr:`FaultyBackend.points` (index, operation, a short label
such as ``"Put inv/|meta +2"``, and the first item's key). The way to enumerate every write point
of a scenario::

    probe = FaultyBackend(MemoryBackend(), FaultPlan.counting())
    await scenario(probe)                       # a run without faults
    for plan in FaultPlan.each(probe.points):   # every point x every kind of fault
        inner = MemoryBackend()
        with contextlib.suppress(Crashed, BackendUnavailableError):
            await scenario(FaultyBackend(inner, plan))
        await recover(inner)                    # a new engine on the same store
        await check_invariants(inner)

A scenario whose concurrency is not deterministic may reach different points in different runs;
the labels tell which.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from backends.api import Backend, BackendUnavailableError, Item, WriteOp

_R = TypeVar("_R")


class Crashed(BaseException):
    """The simulated process died at a write point; it is not an ``Exception`` on purpose.

    Raised by :class:`FaultyBackend` at a ``crash-*`` fault and by every later call on it.
    """


class Fault(enum.StrEnum):
    """What happens at a write point."""

    FAIL = "fail"
    AMBIGUOUS = "ambiguous"
    CRASH_BEFORE = "crash-before"
    CRASH_AFTER = "crash-after"


#: Every kind of fault, in the order :meth:`FaultPlan.each` tries them.
ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)


@dataclass(frozen=True, slots=True)
class WritePoint:
    """One counted call on a :class:`FaultyBackend`.

    Attributes:
        index: 0 for the first counted call, then 1, 2, ...
        operation: ``"write"``, ``"delete_items"``, or with counted reads ``"get"``, ``"query"``,
            ``"due"``, ``"scan"``.
        label: a short, human-readable description: the operation types and the first item's
            pk/sk prefixes (up to their first ``/``), e.g. ``"Put inv/|meta +2"``.
        key: the first item's ``(pk, sk)`` (for ``query``/``scan``: the partition and prefix;
            ``("", "")`` for ``due`` or an empty batch).
        fault: the fault injected here, or ``None``.
    """

    index: int
    operation: str
    label: str
    key: tuple[str, str]
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which faults happen at which write points.

    Attributes:
        faults: write point index -> fault.
        count_reads: also number (and possibly fault) ``get``, ``query``, ``due`` and ``scan``.
    """

    faults: Mapping[int, Fault] = field(default_factory=lambda: MappingProxyType({}))
    count_reads: bool = False

    def __post_init__(self) -> None:
        """Check the indexes and normalise the fault names."""
        normalised: dict[int, Fault] = {}
        for index, fault in self.faults.items():
            if not isinstance(index, int) or index < 0:
                raise ValueError(f"write point indexes are ints >= 0, got {index!r}")
            normalised[index] = Fault(fault)
        object.__setattr__(self, "faults", MappingProxyType(normalised))

    @classmethod
    def counting(cls, *, count_reads: bool = False) -> FaultPlan:
        """No faults: a run that only records the write points."""
        return cls({}, count_reads)

    @classmethod
    def at(cls, index: int, fault: Fault | str, *, count_reads: bool = False) -> FaultPlan:
        """One ``fault`` at write point ``index``."""
        return cls({index: Fault(fault)}, count_reads)

    @classmethod
    def each(
        cls,
        points: Iterable[WritePoint],
        faults: Iterable[Fault | str] = ALL_FAULTS,
        *,
        count_reads: bool = False,
    ) -> list[FaultPlan]:
        """One plan per (write point, fault): every way a recorded run can go wrong once."""
        kinds = [Fault(f) for f in faults]
        return [cls.at(p.index, kind, count_reads=count_reads) for p in points for kind in kinds]


class FaultyBackend:
    """A :class:`~backends.api.Backend` that injects the faults of ``plan`` into ``inner``.

    Args:
        inner: the backend that stores the data; never closed by this wrapper unless
            ``close_inner``.
        plan: the faults to inject; :meth:`FaultPlan.counting` (the default) injects none.
        close_inner: make :meth:`close` close ``inner`` too.

    Attributes:
        points: every counted call so far, in order (see :class:`WritePoint`).
        crashed: ``True`` once a ``crash-*`` fault fired.
        max_value_bytes: ``inner``'s (likewise ``max_batch_ops`` and ``supports_expiry``).
    """

    def __init__(
        self, inner: Backend, plan: FaultPlan | None = None, *, close_inner: bool = False
    ) -> None:
        """Wrap ``inner``; no I/O."""
        self.inner = inner
        self.plan = plan if plan is not None else FaultPlan.counting()
        self.points: list[WritePoint] = []
        self.crashed = False
        self._close_inner = close_inner
        # The contract's capabilities are the inner backend's.
        self.max_value_bytes: int = inner.max_value_bytes
        self.max_batch_ops: int = inner.max_batch_ops
        self.supports_expiry: bool = inner.supports_expiry

    @property
    def fired(self) -> list[WritePoint]:
        """The write points at which a fault was injected."""
        return [p for p in self.points if p.fault is not None]

    # -- the counting and the faults ---------------------------------------------------------

    async def _call(
        self,
        operation: str,
        label: str,
        key: tuple[str, str],
        counted: bool,
        call: Callable[[], Awaitable[_R]],
    ) -> _R:
        """Number the call (if ``counted``), inject the planned fault, run ``call()``."""
        if self.crashed:
            raise Crashed(f"the process crashed earlier; {operation} is not run")
        fault: Fault | None = None
        index = -1
        if counted:
            index = len(self.points)
            fault = self.plan.faults.get(index)
            self.points.append(WritePoint(index, operation, label, key, fault))
        where = f"write point {index} ({operation} {label})"
        if fault is Fault.FAIL:
            raise BackendUnavailableError(f"injected fault at {where}: not applied")
        if fault is Fault.CRASH_BEFORE:
            self.crashed = True
            raise Crashed(f"injected crash before {where}")
        try:
            result = await call()
        except BaseException as e:
            if fault is Fault.CRASH_AFTER:
                self.crashed = True
                raise Crashed(f"injected crash after {where}, which raised {e!r}") from None
            raise
        if fault is Fault.AMBIGUOUS:
            raise BackendUnavailableError(f"injected fault at {where}: applied, response lost")
        if fault is Fault.CRASH_AFTER:
            self.crashed = True
            raise Crashed(f"injected crash after {where}")
        return result

    # -- writes ------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """``inner.write(ops)``, a counted write point."""
        label = _batch_label(type(ops[0]).__name__ if ops else "", [(o.pk, o.sk) for o in ops])
        key = (ops[0].pk, ops[0].sk) if ops else ("", "")
        await self._call("write", label, key, True, lambda: self.inner.write(ops))

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """``inner.delete_items(keys)``, a counted write point."""
        keys = list(keys)
        label = _batch_label("delete_items", keys)
        key = keys[0] if keys else ("", "")
        await self._call("delete_items", label, key, True, lambda: self.inner.delete_items(keys))

    # -- reads -------------------------------------------------------------------------------

    async def get(self, pk: str, sk: str) -> Item | None:
        """``inner.get``; a write point only with ``count_reads``."""
        label = f"get {_prefix(pk)}|{_prefix(sk)}"
        return await self._call(
            "get", label, (pk, sk), self.plan.count_reads, lambda: self.inner.get(pk, sk)
        )

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """``inner.query``; a write point only with ``count_reads``."""
        label = f"query {_prefix(pk)}|{_prefix(prefix)}"
        return await self._call(
            "query",
            label,
            (pk, prefix),
            self.plan.count_reads,
            lambda: self.inner.query(pk, prefix, after=after, limit=limit, reverse=reverse),
        )

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """``inner.due``; a write point only with ``count_reads``."""
        return await self._call(
            "due", "due", ("", ""), self.plan.count_reads, lambda: self.inner.due(until_ms, limit)
        )

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """``inner.scan``; a write point only with ``count_reads``."""
        label = f"scan {_prefix(pk_prefix)}|{_prefix(sk)}"
        return await self._call(
            "scan",
            label,
            (pk_prefix, sk),
            self.plan.count_reads,
            lambda: self.inner.scan(pk_prefix, sk, limit=limit),
        )

    async def close(self) -> None:
        """Never raises :class:`Crashed`; closes ``inner`` only with ``close_inner``."""
        if self._close_inner:
            await self.inner.close()


def _prefix(key: str) -> str:
    """A key up to and including its first ``/`` (at most 24 characters)."""
    head, sep, _ = key.partition("/")
    return (head + sep)[:24]


def _batch_label(kind: str, keys: Sequence[tuple[str, str]]) -> str:
    """``"{kind} {pk prefix}|{sk prefix} +{more}"`` for a batch; ``"(empty)"`` without keys."""
    if not keys:
        return "(empty)"
    pk, sk = keys[0]
    more = f" +{len(keys) - 1}" if len(keys) > 1 else ""
    return f"{kind} {_prefix(pk)}|{_prefix(sk)}{more}"
