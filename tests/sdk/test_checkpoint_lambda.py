"""LambdaCheckpointer: a checkpoint URL that is a Lambda function ARN (the runtime on AWS).

A stub boto3 client stands in for Lambda here; tests/aws/test_checkpoint_channel.py runs the
real client against the local Invoke endpoint and the whole AWS topology."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from restate_lambda import checkpoint_lambda
from restate_lambda.checkpoint import CheckpointBatch, CheckpointError, CheckpointFencedError
from restate_lambda.checkpoint_http import HttpCheckpointer
from restate_lambda.checkpoint_lambda import EVENT_KEY, LambdaCheckpointer, is_lambda_arn, usable
from restate_lambda.endpoint_config import EndpointConfig
from restate_lambda.exchange import checkpoint_channel

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:restate-worker"
BATCH = CheckpointBatch("inv_1", "tok", 7, b"\x00frames", 6)


@pytest.fixture(autouse=True)
def _forget_unusable() -> Iterator[None]:
    """Each test starts as a fresh sandbox (no ARN known to be unusable)."""
    checkpoint_lambda._unusable.clear()
    yield
    checkpoint_lambda._unusable.clear()


class _Client:
    """Answers ``invoke`` with the scripted outcomes, recording the requests."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, tuple):  # a function error
            return {"StatusCode": 200, "FunctionError": outcome[0], "Payload": io.BytesIO(b"{}")}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(outcome).encode())}


def _reply(status: int, body: bytes = b"") -> dict[str, Any]:
    return {"status": status, "body": base64.b64encode(body).decode()}


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Invoke",
    )


def test_arns_are_recognised() -> None:
    assert is_lambda_arn(ARN) and is_lambda_arn(ARN + ":live") and is_lambda_arn(ARN + ":$LATEST")
    assert is_lambda_arn("arn:aws-cn:lambda:cn-north-1:123456789012:function:f")
    for url in ("http://host/restate-lambda/checkpoint", "arn:aws:sqs:eu-west-1:1:q", ARN + ":"):
        assert not is_lambda_arn(url)
    with pytest.raises(ValueError, match="not a Lambda function ARN"):
        LambdaCheckpointer("arn:aws:s3:::bucket")


def test_the_offered_url_picks_the_checkpointer() -> None:
    config = EndpointConfig()
    offer = {"x-restate-checkpoint-token": "tok", "x-restate-checkpoint-url": ARN}
    channel = checkpoint_channel(config, offer)
    assert channel is not None and isinstance(channel.checkpointer, LambdaCheckpointer)
    assert channel.checkpointer.region == "eu-west-1" and channel.token == "tok"
    http = checkpoint_channel(config, {**offer, "x-restate-checkpoint-url": "http://h/c"})
    assert http is not None and isinstance(http.checkpointer, HttpCheckpointer)
    # an ARN this SDK cannot invoke: no channel (the handler suspends after each run)
    assert checkpoint_channel(config, {**offer, "x-restate-checkpoint-url": "arn:aws:x"}) is None


async def test_a_checkpoint_is_one_invoke_with_the_batch() -> None:
    client = _Client(_reply(200, b"\x01notifications"))
    assert await LambdaCheckpointer(ARN, client=client).checkpoint(BATCH) == b"\x01notifications"
    (request,) = client.requests
    assert request["FunctionName"] == ARN and request["InvocationType"] == "RequestResponse"
    event = json.loads(request["Payload"])[EVENT_KEY]
    assert event["headers"] == {
        "content-type": "application/vnd.restate.invocation.v6",
        "x-restate-invocation-id": "inv_1",
        "x-restate-checkpoint-token": "tok",
        "x-restate-journal-index": "7",
    }
    assert base64.b64decode(event["body"]) == b"\x00frames"


async def test_409_is_fenced_and_not_retried() -> None:
    client = _Client(_reply(409, b"the attempt was fenced off"))
    with pytest.raises(CheckpointFencedError, match="fenced off"):
        await LambdaCheckpointer(ARN, client=client, backoff_s=0).checkpoint(BATCH)
    assert len(client.requests) == 1


async def test_transient_failures_are_retried_then_give_up() -> None:
    client = _Client(
        _reply(503, b"store"),
        ("Unhandled",),
        _client_error("TooManyRequestsException", 429),
        _reply(200),
    )
    checkpointer = LambdaCheckpointer(ARN, client=client, backoff_s=0, attempts=4)
    assert await checkpointer.checkpoint(BATCH) == b""
    assert len(client.requests) == 4
    client = _Client(
        EndpointConnectionError(endpoint_url="http://x"),
        _client_error("ServiceException", 500),
        ("Unhandled",),
    )
    with pytest.raises(CheckpointError, match="failed 3 times"):
        await LambdaCheckpointer(ARN, client=client, backoff_s=0).checkpoint(BATCH)


@pytest.mark.parametrize(
    "outcome",
    [
        _client_error("ResourceNotFoundException", 404),
        _client_error("AccessDeniedException", 403),
        _reply(400, b"malformed"),
        {"statusCode": 200, "body": "an HTTP answer, not a checkpoint reply"},
    ],
)
async def test_permanent_failures_fail_at_once(outcome: Any) -> None:
    client = _Client(outcome, _reply(200))
    with pytest.raises(CheckpointError) as info:
        await LambdaCheckpointer(ARN, client=client, backoff_s=0).checkpoint(BATCH)
    assert not isinstance(info.value, CheckpointFencedError)
    assert len(client.requests) == 1


async def test_a_function_the_sandbox_may_not_invoke_is_not_offered_again() -> None:
    """No lambda:InvokeFunction on the checkpoint function: that attempt fails (its step runs
    again), later attempts in this sandbox get no channel and suspend after each run."""
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:denied"
    offer = {"x-restate-checkpoint-token": "tok", "x-restate-checkpoint-url": arn}
    assert usable(arn) and checkpoint_channel(EndpointConfig(), offer) is not None
    client = _Client(_client_error("AccessDeniedException", 403))
    with pytest.raises(CheckpointError, match="AccessDenied"):
        await LambdaCheckpointer(arn, client=client).checkpoint(BATCH)
    assert not usable(arn) and checkpoint_channel(EndpointConfig(), offer) is None
    assert usable(ARN)
