"""The events Lambda (``infra.lambdas.events_handler``) fed as Lambda's Amazon MSK event source
mapping feeds it (``MskEvents`` in ``template.yaml``): a batch of two partitions reaches the
``kafka://`` subscription of its topic through DynamoDB Local and the (moto) work queue, each
record key's events in offset order; a batch with a failed record raises (the mapping has no
partial batch response, so Lambda retries the batch whole) and its redelivery doubles nothing."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from infra import lambdas
from infra.aws_runtime import AwsRuntime
from infra.local_lambda import LocalLambda, restate_lambda_handler
from invoker.event_sources import BatchError
from tests.aws import events
from tests.aws.stack import aws_stack
from tests.events import app

CLUSTER = "arn:aws:kafka:us-east-1:123456789012:cluster/orders-cluster/0a1b2c3d-4e5f-1-1"


@pytest.fixture
def events_app(local_lambda: LocalLambda) -> Iterator[str]:
    """The versioned ARN of a function serving ``tests.events.app`` (``Groups/apply``)."""
    name = f"events-{uuid.uuid4().hex[:8]}"
    arn = local_lambda.add_function(name, restate_lambda_handler([app.groups, app.sink]))
    app.applied.clear()
    yield arn
    local_lambda.remove_function(name)


def _record(partition: int, offset: int, key: str, seq: int) -> dict[str, Any]:
    """One record as Lambda's MSK event source mapping delivers it."""
    return {
        "topic": "orders",
        "partition": partition,
        "offset": offset,
        "timestamp": 1_700_000_000_000 + offset,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(json.dumps({"seq": seq}).encode()).decode(),
        "headers": [{"trace": list(f"t-{partition}-{offset}".encode())}],
    }


def _msk_batch() -> dict[str, Any]:
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": CLUSTER,
        "bootstrapServers": "b-1.orders.kafka.us-east-1.amazonaws.com:9098",
        "records": {
            "orders-0": [_record(0, 10 + n, "c1", n) for n in range(3)],
            "orders-1": [_record(1, 20 + n, "c2", n) for n in range(3)],
        },
    }


def test_msk_batch_through_the_events_lambda(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    events_app: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url) as stack:
        stack.register(events_app)
        assert stack.admin is not None
        body = json.dumps({"source": "kafka://msk/orders", "sink": "service://Groups/apply"})
        answer = stack.admin.admin(
            events.http_api_v2(
                "POST", "/subscriptions", body.encode(), {"content-type": "application/json"}
            ),
            events.Context(),
        )
        assert answer["statusCode"] in (200, 201), answer
        sandbox = AwsRuntime(stack.settings)
        lambdas.set_runtime(sandbox)
        try:
            # The first attempt: c1's second record is not accepted (the sends before it are).
            engine = sandbox.run(sandbox.ready())
            real_send = engine.send

            async def flaky(request: Any) -> Any:
                if request.idempotency_key.endswith("orders-0-11"):
                    raise RuntimeError("throttled")
                return await real_send(request)

            monkeypatch.setattr(engine, "send", flaky)
            with pytest.raises(BatchError):
                lambdas.events_handler(_msk_batch(), events.Context())
            monkeypatch.setattr(engine, "send", real_send)
            # Lambda retries the batch whole; then once more, as if the answer had been lost.
            assert lambdas.events_handler(_msk_batch(), events.Context()) == {}
            assert lambdas.events_handler(_msk_batch(), events.Context()) == {}
        finally:
            lambdas.set_runtime(None)
            sandbox.close()
        stack.pump(until=lambda: len(app.applied) >= 6)
        stack.pump()  # anything more would be a duplicate
    by_key: dict[str, list[Any]] = {}
    for key, seq, _ in app.applied:
        by_key.setdefault(key, []).append(seq)
    assert by_key == {"c1": [0, 1, 2], "c2": [0, 1, 2]}  # once each, in offset order per key
    headers = {(h["kafka.partition"], h["kafka.offset"]): h for _, _, h in app.applied}
    assert headers[("0", "11")]["trace"] == "t-0-11"
    assert headers[("1", "20")]["kafka.timestamp"] == "1700000000020"
