"""Service definitions: ``Service``, ``VirtualObject`` and ``Workflow`` with handler decorators."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from restate_lambda.handler import Handler, HandlerKind, HandlerOptions, ServiceTag, make_handler
from restate_lambda.options import InvocationRetryPolicy, Schedule
from restate_lambda.serde import DefaultSerde, Serde

F = TypeVar("F", bound=Callable[..., Any])


class _ServiceBase:
    """What the three kinds of services share."""

    _kind: Literal["service", "object", "workflow"] = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Any] | None = None,
    ) -> None:
        self.service_tag = ServiceTag(self._kind, name, description, metadata)
        self.handlers: dict[str, Handler] = {}
        self.inactivity_timeout = inactivity_timeout
        self.abort_timeout = abort_timeout
        self.journal_retention = journal_retention
        self.idempotency_retention = idempotency_retention
        self.enable_lazy_state = enable_lazy_state
        self.ingress_private = ingress_private
        self.invocation_retry_policy = invocation_retry_policy
        self.context_managers = invocation_context_managers

    @property
    def name(self) -> str:
        """The service name."""
        return self.service_tag.name

    def _decorator(
        self,
        name: str | None,
        kind: HandlerKind | None,
        accept: str,
        content_type: str,
        input_serde: Serde[Any],
        output_serde: Serde[Any],
        options: HandlerOptions,
    ) -> Callable[[F], F]:
        def wrapper(fn: F) -> F:
            h = make_handler(
                self.service_tag,
                fn,
                name,
                kind,
                accept,
                content_type,
                input_serde,
                output_serde,
                options,
            )
            if h.name in self.handlers:
                raise ValueError(f"handler {h.name} already exists in {self.name}")
            self.handlers[h.name] = h
            return fn

        return wrapper


class Service(_ServiceBase):
    """A stateless service: any number of concurrent invocations, no K/V state."""

    _kind = "service"

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        output_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Any] | None = None,
        schedules: list[Schedule | str] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated ``async def fn(ctx, arg?)`` as a handler (``schedules``: cron
        schedules the runtime fires it on, see :class:`~restate_lambda.options.Schedule`)."""
        opts = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            None,
            ingress_private,
            invocation_retry_policy,
            schedules,
        )
        return self._decorator(name, None, accept, content_type, input_serde, output_serde, opts)


class VirtualObject(_ServiceBase):
    """A keyed object with K/V state; exclusive handlers run one at a time per key."""

    _kind = "object"

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        output_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Any] | None = None,
        schedules: list[Schedule | str] | None = None,
    ) -> Callable[[F], F]:
        """Register an exclusive (default) or shared handler."""
        opts = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            enable_lazy_state,
            ingress_private,
            invocation_retry_policy,
            schedules,
        )
        return self._decorator(name, kind, accept, content_type, input_serde, output_serde, opts)


class Workflow(_ServiceBase):
    """A workflow: ``main`` runs once per key; shared handlers read state and use promises."""

    _kind = "workflow"

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        output_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Any] | None = None,
        schedules: list[Schedule | str] | None = None,
    ) -> Callable[[F], F]:
        """Register the workflow's run handler."""
        opts = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            None,
            workflow_retention,
            enable_lazy_state,
            ingress_private,
            invocation_retry_policy,
            schedules,
        )
        return self._decorator(
            name, "workflow", accept, content_type, input_serde, output_serde, opts
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        output_serde: Serde[Any] = DefaultSerde(),  # noqa: B008
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Any] | None = None,
        schedules: list[Schedule | str] | None = None,
    ) -> Callable[[F], F]:
        """Register a shared handler of the workflow."""
        opts = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            enable_lazy_state,
            ingress_private,
            invocation_retry_policy,
            schedules,
        )
        return self._decorator(
            name, "shared", accept, content_type, input_serde, output_serde, opts
        )


AnyService = Service | VirtualObject | Workflow
