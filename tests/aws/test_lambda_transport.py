"""The Lambda transport through the real boto3 client against the local Invoke endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest

from infra.local_lambda import LocalLambda
from infra.testing import TestEnvironment
from infra.testing import test_environment as make_environment
from invoker.lambda_transport import (
    LAMBDA_SYNC_PAYLOAD_LIMIT,
    LambdaPayloadTooLargeError,
    LambdaTransport,
    parse_function_arn,
    zstd_module,
)
from invoker.transport import Exchange, TransportError
from tests.aws import handlers

DISCOVER = Exchange(
    "GET", "/discover", {"accept": "application/vnd.restate.endpointmanifest.v4+json"}
)


@pytest.fixture
async def env(local_lambda: LocalLambda) -> AsyncIterator[TestEnvironment]:
    """An in-memory runtime whose Lambda transport points at the local endpoint."""
    async with make_environment() as environment:
        environment.engine.transports.lambda_ = LambdaTransport(
            endpoint_url=local_lambda.endpoint_url
        )
        yield environment


def test_arn_parsing() -> None:
    arn = parse_function_arn("arn:aws:lambda:eu-west-1:123456789012:function:greeter:7")
    assert (arn.region, arn.account, arn.name, arn.qualifier) == (
        "eu-west-1",
        "123456789012",
        "greeter",
        "7",
    )
    assert str(arn) == "arn:aws:lambda:eu-west-1:123456789012:function:greeter:7"
    with pytest.raises(TransportError, match="no version"):
        parse_function_arn("arn:aws:lambda:eu-west-1:123456789012:function:greeter")
    with pytest.raises(TransportError, match="not a Lambda function ARN"):
        parse_function_arn("arn:aws:s3:::bucket")


async def test_discovery_over_lambda(local_lambda: LocalLambda, function: str) -> None:
    transport = LambdaTransport(endpoint_url=local_lambda.endpoint_url)
    try:
        reply = await transport.exchange(function, DISCOVER)
    finally:
        await transport.close()
    assert reply.status == 200
    manifest = json.loads(reply.body)
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert {s["name"] for s in manifest["services"]} == {"Greeter", "Counter", "Steps", "Flow"}


async def test_register_and_invoke(env: TestEnvironment, function: str) -> None:
    deployment, created = await env.engine.register_deployment(arn=function)
    assert created and deployment["arn"] == function
    r = await env.ingress.post("/Greeter/greet", json="Lambda")
    assert r.status_code == 200, r.text
    assert r.json() == "Hello, Lambda!"
    r = await env.ingress.post("/Steps/five", json=10)
    assert r.json() == 15
    r = await env.ingress.post("/Counter/c1/add", json=3)
    assert r.json() == 3


async def test_unqualified_arn_is_refused(env: TestEnvironment, local_lambda: LocalLambda) -> None:
    r = await env.admin.post("/deployments", json={"arn": local_lambda.arn("sdk")})
    assert r.status_code == 400
    assert "no version" in r.json()["message"]


async def test_unknown_function_or_version(local_lambda: LocalLambda) -> None:
    transport = LambdaTransport(endpoint_url=local_lambda.endpoint_url)
    try:
        with pytest.raises(TransportError, match="ResourceNotFoundException"):
            await transport.exchange(local_lambda.arn("nope", "1"), DISCOVER)
        with pytest.raises(TransportError, match="ResourceNotFoundException"):
            await transport.exchange(local_lambda.arn("sdk", "9"), DISCOVER)
        reply = await transport.exchange(local_lambda.arn("sdk", "2"), DISCOVER)
        assert reply.status == 200
    finally:
        await transport.close()


async def test_function_error_is_a_retryable_attempt_failure(
    env: TestEnvironment, local_lambda: LocalLambda
) -> None:
    await env.engine.register_deployment(arn=local_lambda.arn("sdk", "1"))
    # point the deployment at the broken function: every attempt fails with FunctionError
    transport = env.engine.transports.lambda_
    assert isinstance(transport, LambdaTransport)
    with pytest.raises(TransportError, match=r"Unhandled.*RuntimeError: the function is broken"):
        await transport.exchange(local_lambda.arn("broken", "1"), DISCOVER)
    with pytest.raises(TransportError, match="invalid envelope"):
        await transport.exchange(local_lambda.arn("garbage", "1"), DISCOVER)
    # a handler exception inside the SDK is an attempt failure too: retried with backoff
    r = await env.ingress.post("/Greeter/fail/send", json="x")
    assert r.status_code == 202
    inv_id = r.json()["invocationId"]
    await env.settle()
    described = await env.engine.describe_invocation(inv_id)
    assert described["status"] == "backing-off"
    before = handlers.CALLS[("sdk", "fail")]
    await env.advance(5_000)
    assert handlers.CALLS[("sdk", "fail")] > before


async def test_request_over_6mb_is_a_clear_terminal_error(
    env: TestEnvironment, function: str
) -> None:
    await env.engine.register_deployment(arn=function)
    big = "x" * (LAMBDA_SYNC_PAYLOAD_LIMIT * 3 // 4 + 1000)  # over 6 MB once base64-encoded
    r = await env.ingress.post("/Greeter/size", json=big)
    assert r.status_code == 413, r.text
    body = r.json()
    assert "synchronous payload limit" in body["message"]
    # the same payload under the limit goes through
    r = await env.ingress.post("/Greeter/size", json="x" * 1_000_000)
    assert r.json() == 1_000_000


async def test_the_endpoint_refuses_over_6mb_like_lambda(local_lambda: LocalLambda) -> None:
    transport = LambdaTransport(
        endpoint_url=local_lambda.endpoint_url, max_payload_bytes=10 * 1024 * 1024
    )
    try:
        big = Exchange("POST", "/invoke/Greeter/size", {}, b"x" * (5 * 1024 * 1024))
        with pytest.raises(LambdaPayloadTooLargeError, match=r"RequestTooLarge|refused"):
            await transport.exchange(local_lambda.arn("sdk", "1"), big)
    finally:
        await transport.close()


def test_boto3_wire_format(local_lambda: LocalLambda) -> None:
    """Raw boto3 calls: function error header, qualifiers, Event and DryRun invocations."""
    client = boto3.client("lambda", endpoint_url=local_lambda.endpoint_url)
    out = client.invoke(FunctionName="broken", Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"
    assert json.loads(out["Payload"].read())["errorType"] == "RuntimeError"
    out = client.invoke(FunctionName="sdk:2", Payload=json.dumps(_discover_event()).encode())
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "2"
    out = client.invoke(FunctionName="123456789012:function:sdk", Qualifier="1", Payload=b"{}")
    assert out["ExecutedVersion"] == "1"
    assert client.invoke(FunctionName="sdk", InvocationType="Event")["StatusCode"] == 202
    assert client.invoke(FunctionName="sdk", InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="sdk:1", Qualifier="2")


def _discover_event() -> dict[str, Any]:
    return {
        "path": "/discover",
        "httpMethod": "GET",
        "headers": {"accept": "application/vnd.restate.endpointmanifest.v4+json"},
        "body": "",
        "isBase64Encoded": True,
    }


async def test_assume_role_uses_sts_once_per_role(
    local_lambda: LocalLambda, s3_endpoint: str
) -> None:
    """Deployments with an assume-role ARN get a client with STS credentials (moto's STS),
    cached per (region, role)."""
    transport = LambdaTransport(
        endpoint_url=local_lambda.endpoint_url, sts_endpoint_url=s3_endpoint
    )
    role = "arn:aws:iam::123456789012:role/restate-invoker"
    try:
        for _ in range(3):
            request = Exchange(
                DISCOVER.method, DISCOVER.path, DISCOVER.headers, assume_role_arn=role
            )
            assert (await transport.exchange(local_lambda.arn("sdk", "1"), request)).status == 200
        assert transport.assume_role_calls == 1
        creds = transport.client("us-east-1", role)._request_signer._credentials
        assert creds.get_frozen_credentials().access_key != "test"  # came from STS
        assert transport.client("us-east-1", role) is transport.client("us-east-1", role)
        assert transport.client("us-east-1") is not transport.client("us-east-1", role)
    finally:
        await transport.close()


def test_compression_only_when_advertised_and_available() -> None:
    transport = LambdaTransport(compression_threshold=10)
    body = b"a" * 1000
    plain = json.loads(transport.encode(Exchange("POST", "/invoke/S/h", {}, body)))
    assert "content-encoding" not in plain["headers"]
    advertised = json.loads(
        transport.encode(Exchange("POST", "/invoke/S/h", {}, body, compression="zstd"))
    )
    if zstd_module() is None:
        assert "content-encoding" not in advertised["headers"]
        assert "accept-encoding" not in advertised["headers"]
    else:
        assert advertised["headers"]["content-encoding"] == "zstd"
        assert advertised["headers"]["accept-encoding"] == "zstd"
        assert len(advertised["body"]) < len(plain["body"])
