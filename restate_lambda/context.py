"""The context API handlers are written against (restate-sdk's names and signatures).

These classes are what users type-annotate (``ctx: restate.Context``); they only declare the
operations. The implementation, backed by the protocol state machine, is
:mod:`restate_lambda.server_context`; a handler receives an instance of the implementation of
its kind (a service handler a ``Context``, an exclusive object handler an ``ObjectContext``,
and so on).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from restate_lambda.options import RunOptions
from restate_lambda.serde import DefaultSerde, Serde

if TYPE_CHECKING:
    from random import Random
    from uuid import UUID

    from restate_lambda.futures import (
        DurablePromise,
        RestateDurableCallFuture,
        RestateDurableFuture,
        RestateDurableSleepFuture,
        SendHandle,
    )

T = TypeVar("T")
P = ParamSpec("P")
#: Default serde of context operations: JSON (typed when a type hint is given).
JSON: Serde[Any] = DefaultSerde()
DEFAULT_RUN_OPTIONS: RunOptions[Any] = RunOptions()


class AttemptFinishedEvent:
    """Set when the attempt ends (completion, suspension, error, disconnect)."""

    def __init__(self) -> None:
        import asyncio

        self._event = asyncio.Event()

    def is_set(self) -> bool:
        """True once the attempt ended."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until the attempt ends."""
        await self._event.wait()

    def set(self) -> None:
        """Mark the attempt as ended."""
        self._event.set()


@dataclass
class Request:
    """Invocation metadata: id, original headers, this attempt's headers, raw body."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    attempt_finished_event: AttemptFinishedEvent = field(default_factory=AttemptFinishedEvent)
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


class Context(abc.ABC):
    """Context of a service handler."""

    # -- metadata -------------------------------------------------------------------------

    @abc.abstractmethod
    def request(self) -> Request:
        """The invocation's metadata."""

    @abc.abstractmethod
    def key(self) -> str:
        """The object/workflow key (empty for services)."""

    @abc.abstractmethod
    def random(self) -> Random:
        """A ``random.Random`` seeded deterministically for this invocation (not for crypto)."""

    @abc.abstractmethod
    def uuid(self) -> UUID:
        """A deterministic UUIDv4 drawn from :meth:`random`."""

    @abc.abstractmethod
    def time(self) -> RestateDurableFuture[float]:
        """The current time in seconds, journaled (a ``ctx.run`` named ``timestamp``)."""

    # -- runs -----------------------------------------------------------------------------

    @overload
    @abc.abstractmethod
    def run_typed(
        self,
        name: str,
        action: Callable[P, Coroutine[Any, Any, T]],
        options: RunOptions[Any] = ...,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    @overload
    @abc.abstractmethod
    def run_typed(
        self,
        name: str,
        action: Callable[P, T],
        options: RunOptions[Any] = ...,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    @abc.abstractmethod
    def run_typed(
        self,
        name: str,
        action: Any,
        options: RunOptions[Any] = DEFAULT_RUN_OPTIONS,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[Any]:
        """Run ``action(*args, **kwargs)`` once and journal its result (sync: in a thread).

        The handler continues past the awaited result only once it is durable (see
        :mod:`restate_lambda.vm.machine`).
        """

    @abc.abstractmethod
    def run(
        self,
        name: str,
        action: Any,
        serde: Serde[Any] = JSON,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: Any = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[Any]:
        """Deprecated form of :meth:`run_typed`."""

    @abc.abstractmethod
    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer of ``delta``."""

    # -- calls ----------------------------------------------------------------------------

    @abc.abstractmethod
    def service_call(
        self,
        tpe: Any,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a service handler (request-response)."""

    @abc.abstractmethod
    def object_call(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a virtual object handler."""

    @abc.abstractmethod
    def workflow_call(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a workflow handler."""

    @abc.abstractmethod
    def service_send(
        self,
        tpe: Any,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send a one-way message (optionally delayed) to a service."""

    @abc.abstractmethod
    def object_send(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send a one-way message to a virtual object."""

    @abc.abstractmethod
    def workflow_send(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send a one-way message to a workflow."""

    @abc.abstractmethod
    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        """Call ``service/handler`` with raw bytes."""

    @abc.abstractmethod
    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        """Send raw bytes to ``service/handler``."""

    # -- awakeables, cancellation, attach ---------------------------------------------------

    @abc.abstractmethod
    def awakeable(
        self, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> tuple[str, RestateDurableFuture[Any]]:
        """A fresh awakeable: (id to hand out, future of its value)."""

    @abc.abstractmethod
    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] = JSON) -> None:
        """Resolve an awakeable (of any invocation)."""

    @abc.abstractmethod
    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Reject an awakeable."""

    def signal(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> RestateDurableFuture[Any]:
        """Await the named signal ``name`` of this invocation (resolved by another invocation
        with :meth:`resolve_signal`, which addresses it by this invocation's id)."""
        raise NotImplementedError

    def resolve_signal(
        self, invocation_id: str, name: str, value: Any, serde: Serde[Any] = JSON
    ) -> None:
        """Resolve the named signal ``name`` of invocation ``invocation_id`` with ``value``."""
        raise NotImplementedError

    def reject_signal(
        self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500
    ) -> None:
        """Reject the named signal ``name`` of invocation ``invocation_id``: its await raises a
        ``TerminalError`` with ``failure_message`` and ``failure_code``."""
        raise NotImplementedError

    @abc.abstractmethod
    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation."""

    @abc.abstractmethod
    def attach_invocation(
        self, invocation_id: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> RestateDurableFuture[Any]:
        """Wait for another invocation's result."""


class ObjectSharedContext(Context):
    """Context of a shared virtual-object handler: read-only state."""

    @overload
    @abc.abstractmethod
    def get(
        self,
        name: str,
        serde: Serde[Any] = ...,
        *,
        type_hint: type[T],
        entry_name: str | None = None,
    ) -> RestateDurableFuture[T | None]: ...

    @overload
    @abc.abstractmethod
    def get(
        self,
        name: str,
        serde: Serde[Any] = ...,
        type_hint: None = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[Any]: ...

    @abc.abstractmethod
    def get(
        self,
        name: str,
        serde: Serde[Any] = JSON,
        type_hint: Any = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[Any]:
        """The value of state ``name`` (``None`` if unset)."""

    @abc.abstractmethod
    def state_keys(self, entry_name: str | None = None) -> RestateDurableFuture[list[str]]:
        """The names of all state entries."""


class ObjectContext(ObjectSharedContext):
    """Context of an exclusive virtual-object handler: read/write state."""

    @abc.abstractmethod
    def set(
        self, name: str, value: Any, serde: Serde[Any] = JSON, entry_name: str | None = None
    ) -> None:
        """Set state ``name``."""

    @abc.abstractmethod
    def clear(self, name: str, entry_name: str | None = None) -> None:
        """Clear state ``name``."""

    @abc.abstractmethod
    def clear_all(self, entry_name: str | None = None) -> None:
        """Clear all state."""


class WorkflowSharedContext(ObjectSharedContext):
    """Context of a workflow's shared handlers: state reads and promises."""

    @abc.abstractmethod
    def promise(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> DurablePromise[Any]:
        """The workflow promise ``name``."""


class WorkflowContext(ObjectContext):
    """Context of a workflow's main handler: state and promises."""

    @abc.abstractmethod
    def promise(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> DurablePromise[Any]:
        """The workflow promise ``name``."""


__all__ = [
    "AttemptFinishedEvent",
    "Context",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "WorkflowContext",
    "WorkflowSharedContext",
]
