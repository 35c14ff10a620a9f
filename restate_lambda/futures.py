"""Durable futures handed to handler code: results of runs, calls, sleeps, awakeables, promises.

They reach the current attempt through the small ``Driver`` interface (a Protocol declared for
type checking), which :class:`~restate_lambda.invocation.Attempt` implements.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from restate_lambda.awaitables import Failure
from restate_lambda.errors import TerminalError

if TYPE_CHECKING:
    from typing import Protocol

    from restate_lambda.awaitables import Result, Tree
    from restate_lambda.serde import Serde

    class Driver(Protocol):
        """What a future needs from the attempt that created it (type checking only: a
        Protocol class costs import time at every cold start)."""

        def is_completed(self, handle: int) -> bool:
            """True if the notification of ``handle`` is ready."""
            ...

        def take(self, handle: int) -> Result:
            """Consume the ready notification of ``handle``."""
            ...

        async def poll(self, tree: Tree) -> None:
            """Block until ``tree`` resolves (raises on suspension, cancellation, failure)."""
            ...

        def cancel_invocation(self, invocation_id: str) -> None:
            """Send the CANCEL signal to another invocation."""
            ...

        def promise(self, kind: int, key: str, result: bytes | Failure | None = None) -> int:
            """Get, peek or complete a workflow promise: the handle of its notification."""
            ...


T = TypeVar("T")
_UNSET: Any = object()


class RestateDurableFuture(Generic[T]):
    """A journaled result; ``await`` it (or combine it with ``gather``/``select``)."""

    __slots__ = ("_attempt", "_result", "_serde", "handle")

    def __init__(self, attempt: Driver, handle: int, serde: Serde[Any] | None) -> None:
        self._attempt = attempt
        self.handle = handle
        self._serde = serde
        self._result: Any = _UNSET

    def is_completed(self) -> bool:
        """True if the result is known (awaiting it will not block)."""
        return self._result is not _UNSET or self._attempt.is_completed(self.handle)

    async def _get(self) -> T:
        if self._result is _UNSET:
            attempt = self._attempt
            if not attempt.is_completed(self.handle):
                await attempt.poll(self.handle)
            if self._result is _UNSET:
                self._result = self._convert(attempt.take(self.handle))
        if isinstance(self._result, Failure):
            f = self._result
            raise TerminalError(f.message, f.code, f.metadata)
        return self._result  # type: ignore[no-any-return]

    def _convert(self, raw: Any) -> Any:
        if isinstance(raw, bytes) and self._serde is not None:
            return self._serde.deserialize(raw)
        return raw

    def __await__(self) -> Generator[Any, None, T]:
        return self._get().__await__()


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """A durable timer."""

    __slots__ = ()


class RestateDurableCallFuture(RestateDurableFuture[T]):
    """The result of a call, plus the callee's invocation id."""

    __slots__ = ("_id_future",)

    def __init__(
        self, attempt: Driver, handle: int, id_handle: int, serde: Serde[Any] | None
    ) -> None:
        super().__init__(attempt, handle, serde)
        self._id_future: RestateDurableFuture[str] = RestateDurableFuture(attempt, id_handle, None)

    async def invocation_id(self) -> str:
        """The invocation id of the callee."""
        return await self._id_future

    async def cancel_invocation(self) -> None:
        """Cancel the callee."""
        self._attempt.cancel_invocation(await self.invocation_id())


class SendHandle:
    """Handle of a one-way send."""

    __slots__ = ("_attempt", "_id_future")

    def __init__(self, attempt: Driver, id_handle: int) -> None:
        self._attempt = attempt
        self._id_future: RestateDurableFuture[str] = RestateDurableFuture(attempt, id_handle, None)

    async def invocation_id(self) -> str:
        """The invocation id of the message's target invocation."""
        return await self._id_future

    async def cancel_invocation(self) -> None:
        """Cancel the target invocation."""
        self._attempt.cancel_invocation(await self.invocation_id())


class DurablePromise(Generic[T]):
    """A workflow promise: ``await p.value()``, ``peek()``, ``resolve(v)``, ``reject(msg)``."""

    def __init__(self, attempt: Driver, name: str, serde: Serde[Any]) -> None:
        self._attempt = attempt
        self.name = name
        self.serde = serde

    def _op(
        self, kind: int, serde: Serde[Any] | None, result: bytes | Failure | None = None
    ) -> RestateDurableFuture[Any]:
        handle = self._attempt.promise(kind, self.name, result)
        return RestateDurableFuture(self._attempt, handle, serde)

    def value(self) -> RestateDurableFuture[T]:
        """Wait for the promise's value."""
        return self._op(0x0409, self.serde)

    def peek(self) -> RestateDurableFuture[T | None]:
        """The value if already resolved, else ``None``."""
        return self._op(0x040A, self.serde)

    def resolve(self, value: T) -> RestateDurableFuture[None]:
        """Resolve the promise (a TerminalError if it was already completed)."""
        return self._op(0x040B, None, self.serde.serialize(value))

    def reject(self, message: str, code: int = 500) -> RestateDurableFuture[None]:
        """Reject the promise."""
        return self._op(0x040B, None, Failure(code, message))

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()
