"""Fixtures for the AWS topology tests: the local Lambda Invoke endpoint hosting handlers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local_lambda import LocalLambda, restate_lambda_handler, restate_sdk_handler
from restate_lambda.clock import ManualClock, SystemClock
from tests.aws import handlers
from tests.support.aws import aws_test_env, dynamodb_endpoint, s3_endpoint

__all__ = ["dynamodb_endpoint", "s3_endpoint"]


@pytest.fixture
def clock() -> ManualClock:
    """The topology's manual clock, started at wall time: handlers compute sleep wake-up
    times from their own wall clock."""
    return ManualClock(SystemClock().now_ms())


def _broken() -> Any:
    def handler(event: Any, context: Any) -> Any:
        raise RuntimeError("the function is broken")

    return handler


def _garbage() -> Any:
    def handler(event: Any, context: Any) -> Any:
        return {"not": "an envelope"}

    return handler


@pytest.fixture(scope="session")
def local_lambda() -> Iterator[LocalLambda]:
    """A local Invoke endpoint with functions ``sdk`` (official restate-sdk), ``ours``
    (restate_lambda), ``broken`` (always raises) and ``garbage`` (answers a non-envelope).

    Handler functions reach it for checkpoints through boto3's ``AWS_ENDPOINT_URL_LAMBDA``
    (:class:`restate_lambda.checkpoint_lambda.LambdaCheckpointer` uses boto3's defaults)."""
    aws_test_env()
    with LocalLambda() as local:
        previous = os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url
        local.add_function("sdk", restate_sdk_handler(handlers.SDK_SERVICES), versions=("1", "2"))
        local.add_function("ours", restate_lambda_handler(handlers.OURS_SERVICES))
        local.add_function("broken", _broken)
        local.add_function("garbage", _garbage)
        try:
            yield local
        finally:
            if previous is None:
                os.environ.pop("AWS_ENDPOINT_URL_LAMBDA", None)
            else:
                os.environ["AWS_ENDPOINT_URL_LAMBDA"] = previous


@pytest.fixture(params=["sdk", "ours"])
def function(request: pytest.FixtureRequest, local_lambda: LocalLambda) -> str:
    """The versioned ARN of each SDK's handler function."""
    name: str = request.param
    return local_lambda.arn(name, "1")
