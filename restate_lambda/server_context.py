"""The implementation of the context API (:mod:`restate_lambda.context`) on the state machine.

One class per handler kind, so that a shared handler's context has no ``set`` and a service's
context no ``get``: :func:`context_class` picks it.
"""

from __future__ import annotations

import functools
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any, get_type_hints

from restate_lambda.awaitables import Failure
from restate_lambda.context import (
    DEFAULT_RUN_OPTIONS,
    JSON,
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from restate_lambda.futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from restate_lambda.handler import core_type, handler_from_callable
from restate_lambda.options import RunOptions
from restate_lambda.serde import BytesSerde, DefaultSerde, Serde

if TYPE_CHECKING:
    from random import Random
    from typing import Protocol
    from uuid import UUID

    from restate_lambda.futures import Driver
    from restate_lambda.vm.machine import Machine

    class AttemptApi(Protocol):
        """What the context needs from its attempt (:class:`~restate_lambda.invocation.Attempt`;
        type checking only)."""

        machine: Machine
        request: Request

        @property
        def driver(self) -> Driver:
            """The driver handed to futures."""
            ...

        def register_run(
            self,
            handle: int,
            action: Any,
            serde: Serde[Any],
            options: RunOptions[Any],
            name: str = "",
        ) -> None:
            """Remember the closure of run ``handle`` until the machine asks to execute it."""
            ...


def _default(serde: Serde[Any] | None, type_hint: Any) -> Serde[Any]:
    if serde is None or isinstance(serde, DefaultSerde):
        return DefaultSerde(type_hint) if type_hint is not None else JSON
    return serde


class ServiceInvocationContext(Context):
    """The context of a service handler, and the base of every other kind."""

    def __init__(self, attempt: AttemptApi) -> None:
        self._attempt = attempt
        self._driver = attempt.driver
        self._m = attempt.machine
        self._random: Random | None = None

    # -- metadata -------------------------------------------------------------------------

    def request(self) -> Request:
        """The invocation's metadata."""
        return self._attempt.request

    def key(self) -> str:
        """The object/workflow key (empty for services)."""
        return self._m.key

    def random(self) -> Random:
        """A ``random.Random`` seeded deterministically for this invocation (not for crypto)."""
        if self._random is None:
            from random import Random

            self._random = Random(self._m.random_seed)
        return self._random

    def uuid(self) -> UUID:
        """A deterministic UUIDv4 drawn from :meth:`random`."""
        from uuid import UUID

        return UUID(int=self.random().getrandbits(128), version=4)

    def time(self) -> RestateDurableFuture[float]:
        """The current time in seconds, journaled (a ``ctx.run`` named ``timestamp``)."""
        from restate_lambda.clock import handler_clock

        clock = handler_clock()
        return self.run_typed(
            "timestamp", lambda: clock.now_ms() / 1000, RunOptions(type_hint=float)
        )

    # -- runs -----------------------------------------------------------------------------

    def run_typed(
        self,
        name: str,
        action: Any,
        options: RunOptions[Any] = DEFAULT_RUN_OPTIONS,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[Any]:
        """Run ``action(*args, **kwargs)`` once and journal its result (sync: in a thread)."""
        serde = options.serde
        if isinstance(serde, DefaultSerde):
            hint = options.type_hint
            if hint is None:
                hint = _return_hint(action)
            serde = DefaultSerde(core_type(hint)[1]) if hint is not None else JSON
        handle, replayed = self._m.run(name)
        if not replayed:
            fn = functools.partial(action, *args, **kwargs) if args or kwargs else action
            self._attempt.register_run(handle, fn, serde, options, name)
        return RestateDurableFuture(self._driver, handle, serde)

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
        opts: RunOptions[Any] = RunOptions(
            serde=serde,
            type_hint=type_hint,
            max_attempts=max_attempts,
            max_duration=max_retry_duration,
        )
        return self.run_typed(name, action, opts, *(args or ()))

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer of ``delta``."""
        from restate_lambda.clock import handler_clock

        wake = handler_clock().now_ms() + int(delta.total_seconds() * 1000)
        return RestateDurableSleepFuture(self._driver, self._m.sleep(wake, name or ""), None)

    # -- calls ----------------------------------------------------------------------------

    def _call(
        self,
        tpe: Any,
        arg: Any,
        key: str | None,
        send: bool,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> Any:
        h = handler_from_callable(tpe)
        param = h.input_serde.serialize(arg)
        return self._raw_call(
            h.service_tag.name,
            h.name,
            param,
            h.output_serde,
            key,
            send,
            delay,
            idempotency_key,
            headers,
        )

    def _raw_call(
        self,
        service: str,
        handler: str,
        param: bytes,
        out: Serde[Any],
        key: str | None,
        send: bool,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> Any:
        hdrs = list(headers.items()) if headers else None
        if send or delay:
            invoke_time = 0
            if delay:
                from restate_lambda.clock import handler_clock

                invoke_time = handler_clock().now_ms() + int(delay.total_seconds() * 1000)
            h = self._m.send(service, handler, param, key or "", invoke_time, idempotency_key, hdrs)
            return SendHandle(self._driver, h)
        id_h, res_h = self._m.call(service, handler, param, key or "", idempotency_key, hdrs)
        return RestateDurableCallFuture(self._driver, res_h, id_h, out)

    def service_call(
        self,
        tpe: Any,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a service handler (request-response)."""
        return self._call(tpe, arg, None, False, None, idempotency_key, headers)  # type: ignore[no-any-return]

    def object_call(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a virtual object handler."""
        return self._call(tpe, arg, key, False, None, idempotency_key, headers)  # type: ignore[no-any-return]

    def workflow_call(
        self,
        tpe: Any,
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Call a workflow handler."""
        return self.object_call(tpe, key, arg, idempotency_key, headers)

    def service_send(
        self,
        tpe: Any,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send a one-way message (optionally delayed) to a service."""
        return self._call(tpe, arg, None, True, send_delay, idempotency_key, headers)  # type: ignore[no-any-return]

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
        return self._call(tpe, arg, key, True, send_delay, idempotency_key, headers)  # type: ignore[no-any-return]

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
        return self.object_send(tpe, key, arg, send_delay, idempotency_key, headers)

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
        out = BytesSerde()
        return self._raw_call(  # type: ignore[no-any-return]
            service, handler, arg, out, key, False, None, idempotency_key, headers
        )

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
        out = BytesSerde()
        return self._raw_call(  # type: ignore[no-any-return]
            service, handler, arg, out, key, True, send_delay, idempotency_key, headers
        )

    # -- awakeables, cancellation, attach ---------------------------------------------------

    def awakeable(
        self, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> tuple[str, RestateDurableFuture[Any]]:
        """A fresh awakeable: (id to hand out, future of its value)."""
        aid, h = self._m.awakeable()
        return aid, RestateDurableFuture(self._driver, h, _default(serde, type_hint))

    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] = JSON) -> None:
        """Resolve an awakeable (of any invocation)."""
        self._m.complete_awakeable(name, _default(serde, None).serialize(value))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Reject an awakeable."""
        self._m.complete_awakeable(name, Failure(failure_code, failure_message))

    def signal(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> RestateDurableFuture[Any]:
        """Await the named signal ``name`` of this invocation."""
        h = self._m.named_signal(name)
        return RestateDurableFuture(self._driver, h, _default(serde, type_hint))

    def resolve_signal(
        self, invocation_id: str, name: str, value: Any, serde: Serde[Any] = JSON
    ) -> None:
        """Resolve another invocation's named signal."""
        self._m.complete_signal(invocation_id, name, _default(serde, None).serialize(value))

    def reject_signal(
        self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500
    ) -> None:
        """Reject another invocation's named signal."""
        self._m.complete_signal(invocation_id, name, Failure(failure_code, failure_message))

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation."""
        if invocation_id is None:
            raise ValueError("invocation_id cannot be None")
        self._m.cancel_invocation(invocation_id)

    def attach_invocation(
        self, invocation_id: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> RestateDurableFuture[Any]:
        """Wait for another invocation's result."""
        if invocation_id is None:
            raise ValueError("invocation_id cannot be None")
        h = self._m.attach_invocation(invocation_id)
        return RestateDurableFuture(self._driver, h, _default(serde, type_hint))


class ObjectSharedInvocationContext(ServiceInvocationContext, ObjectSharedContext):
    """The context of a shared virtual-object handler."""

    def get(
        self,
        name: str,
        serde: Serde[Any] = JSON,
        type_hint: Any = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[Any]:
        """The value of state ``name`` (``None`` if unset)."""
        handle = self._m.get_state(name)
        return RestateDurableFuture(self._driver, handle, _default(serde, type_hint))

    def state_keys(self, entry_name: str | None = None) -> RestateDurableFuture[list[str]]:
        """The names of all state entries."""
        return RestateDurableFuture(self._driver, self._m.get_state_keys(), None)


class ObjectInvocationContext(ObjectSharedInvocationContext, ObjectContext):
    """The context of an exclusive virtual-object handler."""

    def set(
        self, name: str, value: Any, serde: Serde[Any] = JSON, entry_name: str | None = None
    ) -> None:
        """Set state ``name``."""
        s = serde if not isinstance(serde, DefaultSerde) else DefaultSerde(type(value))
        self._m.set_state(name, s.serialize(value))

    def clear(self, name: str, entry_name: str | None = None) -> None:
        """Clear state ``name``."""
        self._m.clear_state(name)

    def clear_all(self, entry_name: str | None = None) -> None:
        """Clear all state."""
        self._m.clear_all_state()


class WorkflowSharedInvocationContext(ObjectSharedInvocationContext, WorkflowSharedContext):
    """The context of a workflow's shared handlers."""

    def promise(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> DurablePromise[Any]:
        """The workflow promise ``name``."""
        return DurablePromise(self._driver, name, _default(serde, type_hint))


class WorkflowInvocationContext(ObjectInvocationContext, WorkflowContext):
    """The context of a workflow's main handler."""

    def promise(
        self, name: str, serde: Serde[Any] = JSON, type_hint: Any = None
    ) -> DurablePromise[Any]:
        """The workflow promise ``name``."""
        return DurablePromise(self._driver, name, _default(serde, type_hint))


#: Return hints of step functions already looked at (resolving them costs ~25 us a step).
_hints: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _return_hint(action: Any) -> Any:
    target = action.func if isinstance(action, functools.partial) else action
    try:
        return _hints[target]
    except (KeyError, TypeError):  # not seen yet, or not weakly referenceable
        pass
    try:
        hint = get_type_hints(target).get("return")
    except (TypeError, ValueError, NameError, AttributeError):
        hint = None
    try:
        _hints[target] = hint
    except TypeError:
        pass  # a builtin: looked up each time
    return hint


def context_class(service_kind: str, handler_kind: str | None) -> type[ServiceInvocationContext]:
    """The context implementation for a handler of ``handler_kind`` in a ``service_kind``."""
    if service_kind == "object":
        if handler_kind == "shared":
            return ObjectSharedInvocationContext
        return ObjectInvocationContext
    if service_kind == "workflow":
        if handler_kind == "workflow":
            return WorkflowInvocationContext
        return WorkflowSharedInvocationContext
    return ServiceInvocationContext
