"""What the engine offers to the ingress, the admin API and the CLI.

The ingress is a thin HTTP layer over :class:`EngineApi`; everything durable happens behind
it. Errors come back as :class:`EngineError` subclasses carrying the HTTP status code and
message that Restate's ingress/admin API would answer with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from invoker.introspection.source import IntrospectionSource


class EngineError(Exception):
    """An error with an HTTP status and a message for the client."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequestError(EngineError):
    """Malformed input (400)."""

    status = 400


class NotFoundError(EngineError):
    """Unknown service, handler, invocation, deployment, awakeable (404)."""

    status = 404


class ConflictingRequestError(EngineError):
    """The request conflicts with existing state, e.g. a workflow run re-submitted (409)."""

    status = 409


class GoneError(EngineError):
    """The invocation completed but its output is no longer retained (410)."""

    status = 410


class PayloadTooLargeError(EngineError):
    """Request body over the limit (413)."""

    status = 413


class NotReadyError(EngineError):
    """The invocation exists but has not completed yet (470, Restate's code)."""

    status = 470


class UnavailableError(EngineError):
    """The engine cannot serve right now (503)."""

    status = 503


class StillRunningError(EngineError):
    """A blocking call's deadline passed (an API Gateway integration's, a Lambda function's):
    the invocation is durably stored and goes on; attach to it by id or idempotency key (504)."""

    status = 504

    def __init__(self, message: str, invocation_id: str) -> None:
        super().__init__(message)
        self.invocation_id = invocation_id


@dataclass(frozen=True, slots=True)
class Target:
    """Where an invocation goes: ``service/handler`` or ``service/key/handler``."""

    service: str
    handler: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """One ingress call or send."""

    target: Target
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    idempotency_key: str | None = None
    delay_ms: int | None = None  # only for sends


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a completed invocation (success or terminal failure)."""

    invocation_id: str
    ok: bool
    value: bytes = b""
    content_type: str | None = None
    failure_code: int = 500
    failure_message: str = ""
    failure_metadata: dict[str, str] = field(default_factory=dict)
    idempotency_expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """Answer to a one-way send."""

    invocation_id: str
    previously_accepted: bool
    execution_time_ms: int | None = None


ServiceType = Literal["Service", "VirtualObject", "Workflow"]


@dataclass(frozen=True, slots=True)
class HandlerInput:
    """What request body a handler accepts, from the ``input`` of its discovery manifest.

    The ingress uses it to reproduce restate-server's content-type checks (400 before any
    invocation is created):

    * ``accepts_body=False`` (manifest handler without ``input``, the SDK's ``-> None`` input):
      any body or any ``content-type`` header is rejected.
    * otherwise a request with an empty body and no content-type is accepted unless
      ``required`` is true; a non-empty body needs a ``content-type`` matching
      ``content_type`` (media type compared case-insensitively, parameters ignored, ``*/*``
      and ``type/*`` patterns allowed; ``None`` means any content-type is fine);
      ``json=True`` additionally rejects an empty body sent with a content-type.
    """

    accepts_body: bool = True
    required: bool = False
    content_type: str | None = "application/json"
    json: bool = True


class EngineApi(Protocol):
    """The operations behind the ingress and admin HTTP APIs.

    Every method raises an :class:`EngineError` subclass for client-visible errors.
    """

    # --- ingress -----------------------------------------------------------------------
    async def call(self, request: InvokeRequest) -> Outcome:
        """Submit an invocation and wait for its outcome."""
        ...

    async def send(self, request: InvokeRequest) -> SendResult:
        """Submit an invocation without waiting (optionally delayed)."""
        ...

    async def attach(self, invocation_id: str) -> Outcome:
        """Wait for an invocation's outcome."""
        ...

    async def output(self, invocation_id: str) -> Outcome:
        """The outcome now; :class:`NotReadyError` while it runs."""
        ...

    def workflow_invocation_id(self, workflow: str, key: str) -> str:
        """The invocation id of the run handler of workflow ``workflow`` with id ``key``."""
        ...

    def idempotent_invocation_id(self, target: Target, idempotency_key: str) -> str:
        """The invocation id an idempotent request to ``target`` gets."""
        ...

    async def resolve_awakeable(self, awakeable_id: str, value: bytes) -> None:
        """Complete an awakeable with a value."""
        ...

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Complete an awakeable with a terminal failure (code 500)."""
        ...

    def is_ingress_reachable(self, target: Target) -> None:
        """Raise NotFoundError/BadRequestError if ``target`` is unknown, private or misaddressed."""
        ...

    async def checkpoint(
        self, invocation_id: str, token: str, journal_index: int, frames: bytes
    ) -> bytes:
        """Commit a handler's checkpoint (see :mod:`restate_lambda.checkpoint`); the framed
        notifications journaled ahead of it. ConflictingRequestError when the attempt was fenced
        off, BadRequestError for a malformed batch."""
        ...

    async def refresh_registry(self) -> bool:
        """Pick up deployments registered through other engines on the same store (one read
        when nothing changed); True when something did. The ingress calls it on a lookup miss
        before answering 404."""
        ...

    def service_type(self, service: str) -> ServiceType:
        """The kind of a registered service (latest revision); NotFoundError if unknown.

        The ingress needs it to parse legacy paths: ``/Svc/handler/send`` and
        ``/Obj/key/handler`` both have three segments. Must be cheap (in-memory schema).
        """
        ...

    def handler_input(self, target: Target) -> HandlerInput:
        """The input rules of ``target``'s handler (see :class:`HandlerInput`).

        Called after :meth:`is_ingress_reachable` succeeded; NotFoundError if unknown.
        """
        ...

    def is_ingress_private(self, service: str, handler: str | None = None) -> bool:
        """Whether ``service`` (or, when ``handler`` is given, the service or that handler) is
        ``ingress_private`` in the latest registered revision.

        The ingress asks it before answering any route that reaches an existing invocation
        (attach, output, lookup, awakeable completion), so that a private service's
        invocations stay unreachable from outside. ``False`` when the service or handler is not
        registered (the route then answers as it would for any unknown target). In-memory, no
        I/O, must be cheap.
        """
        ...

    async def invocation_target(self, invocation_id: str) -> Target | None:
        """The target (service, handler, key) invocation ``invocation_id`` was created for.

        Read from the invocation's stored record (one read). ``None`` when no record exists:
        unknown, not yet durably created, purged or expired; never raises NotFoundError for
        that. ``invocation_id`` is well-formed (the ingress checked its syntax first). The
        ingress uses it with :meth:`is_ingress_private` to refuse attach, output and awakeable
        completion for invocations of private services and handlers.
        """
        ...

    # --- admin -------------------------------------------------------------------------
    async def register_deployment(
        self,
        uri: str | None = None,
        arn: str | None = None,
        *,
        additional_headers: dict[str, str] | None = None,
        use_http_11: bool = False,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
        assume_role_arn: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Discover and register a deployment; returns (deployment JSON, created?)."""
        ...

    async def list_deployments(self) -> list[dict[str, Any]]:
        """Deployments as Restate's admin API shows them."""
        ...

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """One deployment."""
        ...

    async def remove_deployment(self, deployment_id: str, force: bool = False) -> None:
        """Remove a deployment."""
        ...

    async def list_services(self) -> list[dict[str, Any]]:
        """Services as Restate's admin API shows them."""
        ...

    async def get_service(self, name: str) -> dict[str, Any]:
        """One service."""
        ...

    async def manage_invocation(
        self,
        invocation_id: str,
        action: Literal["cancel", "kill", "purge", "purge-journal", "pause", "resume"],
    ) -> bool:
        """Apply a lifecycle operation; True when only accepted (a pause of a running attempt
        takes effect as the attempt ends: 202 instead of 200, as restate-server answers)."""
        ...

    async def list_invocations(
        self, *, include_completed: bool = True, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Invocation summaries (sys_invocation-like rows), newest first."""
        ...

    async def describe_invocation(self, invocation_id: str) -> dict[str, Any]:
        """An invocation's status row plus its journal."""
        ...

    async def get_state(self, service: str, key: str) -> dict[str, bytes]:
        """The K/V state of one object or workflow instance."""
        ...

    def introspection(self) -> IntrospectionSource:
        """Read-only access to the store and the registry for SQL over the system tables
        (``POST /query``, :mod:`invoker.introspection`). Cheap: no I/O until a query reads."""
        ...

    async def modify_state(
        self, service: str, key: str, new_state: dict[str, bytes], version: str | None = None
    ) -> None:
        """Replace the K/V state of one virtual object or workflow instance
        (``POST /services/{service}/state``; see :mod:`invoker.state_edit`)."""
        ...


class LifecycleApi(Protocol):
    """Lifecycle operations that take arguments or answer a body (restate-server 1.7)."""

    async def restart_as_new(
        self, invocation_id: str, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """Create a new invocation from a completed one's input (and journal prefix up to
        command ``from_index``); return the new id."""
        ...

    async def resume_invocation(self, invocation_id: str, deployment: str | None = None) -> None:
        """Resume a paused invocation, optionally on another deployment (``latest``, an id)."""
        ...


class SchedulesApi(Protocol):
    """Cron schedules (:mod:`invoker.schedules`), as the admin API shows them."""

    async def create_schedule(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create from a ``POST /schedules`` body; (schedule, created?)."""
        ...

    async def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule."""
        ...

    async def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule (404 if unknown)."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete one schedule (404 if unknown)."""
        ...

    async def pause_schedule(self, schedule_id: str, paused: bool) -> dict[str, Any]:
        """Pause or resume one schedule."""
        ...


class SubscriptionsApi(Protocol):
    """Event subscriptions (Restate's ``/subscriptions``), see :mod:`invoker.subscriptions`."""

    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create from a ``POST /subscriptions`` body ``{source, sink, options?}``."""
        ...

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription."""
        ...

    async def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        """One subscription (404 if unknown)."""
        ...

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete one subscription (404 if unknown)."""
        ...
