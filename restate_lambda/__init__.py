"""restate_lambda: a pure-Python Restate SDK (Lambda, ASGI, in process) and the core shared by
the restate-lambda runtime.

Written for restate-sdk's API: ``import restate_lambda as restate`` runs a module written for
``import restate``. Names are loaded on first access so that importing the package stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from restate_lambda.checkpoint import (
        CheckpointBatch,
        Checkpointer,
        CheckpointError,
        CheckpointFencedError,
    )
    from restate_lambda.combinators import as_completed, gather, select, wait_completed
    from restate_lambda.context import (
        Context,
        ObjectContext,
        ObjectSharedContext,
        Request,
        WorkflowContext,
        WorkflowSharedContext,
    )
    from restate_lambda.deadline import DeadlinePolicy
    from restate_lambda.endpoint import Endpoint
    from restate_lambda.errors import (
        RetryableError,
        SdkInternalBaseException,
        TerminalError,
        is_internal_exception,
    )
    from restate_lambda.futures import (
        DurablePromise,
        RestateDurableCallFuture,
        RestateDurableFuture,
        RestateDurableSleepFuture,
        SendHandle,
    )
    from restate_lambda.logger import RestateLoggingFilter, getLogger
    from restate_lambda.options import InvocationRetryPolicy, RunOptions, Schedule
    from restate_lambda.serde import (
        BytesSerde,
        DefaultSerde,
        JsonSerde,
        MsgspecJsonSerde,
        PydanticJsonSerde,
        Serde,
    )
    from restate_lambda.service import Service, VirtualObject, Workflow

_EXPORTS: dict[str, tuple[str, ...]] = {
    "service": ("Service", "VirtualObject", "Workflow"),
    "context": (
        "Context",
        "ObjectContext",
        "ObjectSharedContext",
        "Request",
        "WorkflowContext",
        "WorkflowSharedContext",
    ),
    "errors": (
        "RetryableError",
        "SdkInternalBaseException",
        "TerminalError",
        "is_internal_exception",
    ),
    "futures": (
        "DurablePromise",
        "RestateDurableCallFuture",
        "RestateDurableFuture",
        "RestateDurableSleepFuture",
        "SendHandle",
    ),
    "options": ("InvocationRetryPolicy", "RunOptions", "Schedule"),
    "serde": (
        "BytesSerde",
        "DefaultSerde",
        "JsonSerde",
        "MsgspecJsonSerde",
        "PydanticJsonSerde",
        "Serde",
    ),
    "combinators": ("as_completed", "gather", "select", "wait_completed"),
    "endpoint": ("Endpoint",),
    "checkpoint": ("CheckpointBatch", "CheckpointError", "CheckpointFencedError", "Checkpointer"),
    "deadline": ("DeadlinePolicy",),
    "logger": ("RestateLoggingFilter", "getLogger"),
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "BytesSerde",
    "CheckpointBatch",
    "CheckpointError",
    "CheckpointFencedError",
    "Checkpointer",
    "Context",
    "DeadlinePolicy",
    "DefaultSerde",
    "DurablePromise",
    "Endpoint",
    "InvocationRetryPolicy",
    "JsonSerde",
    "MsgspecJsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RetryableError",
    "RunOptions",
    "Schedule",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "gather",
    "getLogger",
    "is_internal_exception",
    "select",
    "wait_completed",
]


def app(
    services: Any,
    protocol: str | None = None,
    identity_keys: list[str] | None = None,
    *,
    checkpointer: Checkpointer | None = None,
    deadline: DeadlinePolicy | Literal["default"] | None = "default",
    eager_runs: bool = False,
) -> Any:
    """An ASGI app hosting ``services`` (a Lambda handler when ``AWS_LAMBDA_FUNCTION_NAME`` is set).

    ``protocol``: ``"bidi"`` or ``"request_response"`` to force the announced mode (default:
    bidi over HTTP/2, request-response otherwise).

    Every ``ctx.run`` result is durable before the handler continues: acknowledged on the
    stream (HTTP/2 bidi, in process), made durable through a checkpoint channel when the
    runtime offers one (``checkpointer``: the channel to use for requests that carry a
    checkpoint token but no URL; see :mod:`restate_lambda.checkpoint`), or else the attempt
    suspends after the run and the runtime invokes the handler again, as with the official SDK.

    ``deadline`` (AWS Lambda): stop at a step boundary and suspend when the time left drops
    below the policy's margin (``"default"``: 5 s or 10 % of the time budget, the larger;
    ``None``: never).

    ``eager_runs`` (opt-in, weaker): in request-response mode without a checkpoint channel,
    continue with a run's value before it is journaled (one invocation for N steps); if the
    attempt then fails, the step runs again and later steps may see a different value.
    """
    from restate_lambda.endpoint import Endpoint

    endpoint = Endpoint()
    if protocol == "bidi":
        endpoint.streaming_protocol()
    elif protocol == "request_response":
        endpoint.request_response_protocol()
    endpoint.bind(*services)
    for key in identity_keys or ():
        endpoint.identity_key(key)
    endpoint.checkpointer = checkpointer
    endpoint.deadline = deadline
    endpoint.eager_runs = eager_runs
    return endpoint.app()


def __getattr__(name: str) -> Any:
    """Load the submodule defining ``name`` on first access (PEP 562)."""
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{mod}", fromlist=[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
