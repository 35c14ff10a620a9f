"""AWS Lambda entry points of the runtime (the ``Handler`` values in ``template.yaml``).

================================  ==========================================================
``infra.lambdas.ingress_handler``  API Gateway HTTP API (v2) / REST API (v1) / Function URL
                                   events: Restate's ingress API (Mangum, lifespan off)
``infra.lambdas.worker_handler``   SQS events from the work queue: drive each named
                                   invocation; answers ``batchItemFailures``
                                   (``ReportBatchItemFailures``)
``infra.lambdas.sweeper_handler``  EventBridge schedule (``rate(1 minute)``): fire due timers,
                                   re-dispatch due work, schedule SQS wake-ups for what is near
``infra.lambdas.admin_handler``    Restate's admin API over HTTP, ``Custom::Deployment``
                                   resources, direct ``{"register": ...}`` invocations
``infra.lambdas.events_handler``   event source mappings (SQS, Kinesis, DynamoDB Streams,
                                   MSK): deliver the batch to the subscriptions of its source;
                                   answers ``batchItemFailures``
``infra.lambdas.checkpoint_handler`` checkpoints of handler functions
                                   (``{"restate_lambda_checkpoint": ...}``, see
                                   :mod:`infra.checkpoint_events`); ingress, worker and admin
                                   accept them too (they offer themselves by default)
================================  ==========================================================

Settings come from environment variables (:mod:`infra.settings`). Each sandbox builds one
:class:`~infra.aws_runtime.AwsRuntime` on its first invocation and reuses it while warm.
Importing this module does no I/O and imports neither boto3 nor Mangum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.aws_runtime import AwsRuntime
from infra.checkpoint_events import is_checkpoint_event
from infra.logging_setup import configure_lambda_logging
from infra.settings import AwsSettings

_runtime: AwsRuntime | None = None


def runtime() -> AwsRuntime:
    """This sandbox's runtime (created on first use from the environment)."""
    global _runtime
    if _runtime is None:
        settings = AwsSettings.from_env()
        configure_lambda_logging(settings.log_level)
        _runtime = AwsRuntime(settings)
    return _runtime


def set_runtime(value: AwsRuntime | None) -> None:
    """Use ``value`` for the entry points (tests), or forget the current one (``None``)."""
    global _runtime
    _runtime = value


def route(rt: AwsRuntime, entry: str, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A checkpoint event to :meth:`AwsRuntime.checkpoint`, any other to the entry point
    ``entry`` (``"ingress"``, ``"worker"``, ``"admin"``) of ``rt``."""
    if is_checkpoint_event(event):
        return rt.checkpoint(event, context)
    result: dict[str, Any] = getattr(rt, entry)(event, context)
    return result


def routed(rt: AwsRuntime, entry: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler :func:`route` makes of ``rt`` and ``entry`` (local hosting, tests)."""
    return lambda event, context: route(rt, entry, event, context)


def ingress_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Restate's ingress API behind API Gateway or a Function URL (and checkpoints)."""
    return route(runtime(), "ingress", event, context)


def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Drive the invocations of an SQS batch (and answer checkpoints)."""
    return route(runtime(), "worker", event, context)


def sweeper_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The scheduled sweep."""
    return runtime().sweeper(event, context)


def admin_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The admin API and deployment registration (and checkpoints)."""
    return route(runtime(), "admin", event, context)


def checkpoint_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Checkpoints of handler functions; any other event is answered with status 400."""
    return runtime().checkpoint(event, context)


def events_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An event-source batch for the subscriptions of its source."""
    return runtime().events(event, context)
