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
================================  ==========================================================

Settings come from environment variables (:mod:`infra.settings`). Each sandbox builds one
:class:`~infra.aws_runtime.AwsRuntime` on its first invocation and reuses it while warm.
Importing this module does no I/O and imports neither boto3 nor Mangum.
"""

from __future__ import annotations

from typing import Any

from infra.aws_runtime import AwsRuntime
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


def ingress_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Restate's ingress API behind API Gateway or a Function URL."""
    return runtime().ingress(event, context)


def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Drive the invocations of an SQS batch."""
    return runtime().worker(event, context)


def sweeper_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The scheduled sweep."""
    return runtime().sweeper(event, context)


def admin_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The admin API and deployment registration."""
    return runtime().admin(event, context)


def events_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An event-source batch for the subscriptions of its source."""
    return runtime().events(event, context)
