"""Kinesis, DynamoDB Streams and Kafka batches: keys, metadata headers, failure reports."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest

from backends.memory import MemoryBackend
from infra.pollers import DynamoDbStreamPoller
from infra.testing import TestEnvironment, running_environment
from invoker.event_sources import BatchError, handle_batch
from tests.events import app
from tests.support.aws import REGION, SERVERS, aws_test_env


@pytest.fixture
async def env() -> AsyncIterator[TestEnvironment]:
    app.applied.clear()
    async with running_environment(MemoryBackend()) as environment:
        await environment.mount("events", app.app)
        yield environment


def _kinesis(seq: int, key: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventSource": "aws:kinesis",
        "eventID": f"shardId-000000000000:{seq:030d}",
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:1:stream/clicks",
        "kinesis": {
            "partitionKey": key,
            "sequenceNumber": f"{seq:030d}",
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "approximateArrivalTimestamp": 1.7e9,
        },
    }


async def test_kinesis_partition_keys_order_and_earliest_failure(env: TestEnvironment) -> None:
    engine = env.engine
    await engine.create_subscription(
        {"source": "kinesis://clicks", "sink": "service://Groups/apply"}
    )
    records = [_kinesis(n, f"k{n % 2}", {"seq": n // 2}) for n in range(6)]
    failing = {"seq": None}

    async def send(request: Any) -> Any:
        if request.idempotency_key.endswith(records[3]["eventID"]) and failing["seq"] is None:
            failing["seq"] = 3
            raise RuntimeError("throttled")
        return await engine.send(request)

    first = await handle_batch({"Records": records}, engine.subscriptions, engine.registry, send)
    assert first == {"batchItemFailures": [{"itemIdentifier": f"{3:030d}"}]}
    again = await engine.handle_event_batch({"Records": records})
    assert again == {"batchItemFailures": []}
    await engine.drain()
    assert json.loads((await engine.get_state("Groups", "k0"))["seen"]) == [0, 1, 2]
    assert json.loads((await engine.get_state("Groups", "k1"))["seen"]) == [0, 1, 2]
    headers = app.applied[0][2]
    assert headers["kinesis.partition_key"] in ("k0", "k1")
    assert len(app.applied) == 6


async def test_kafka_batch_headers_and_whole_batch_retry(env: TestEnvironment) -> None:
    engine = env.engine
    sub = await engine.create_subscription(
        {"source": "kafka://msk/orders", "sink": "service://Groups/apply"}
    )
    assert sub["options"]["group.id"] == sub["id"]

    def record(offset: int) -> dict[str, Any]:
        return {
            "topic": "orders",
            "partition": 0,
            "offset": offset,
            "timestamp": 1_700_000_000_000 + offset,
            "key": base64.b64encode(b"customer-1").decode(),
            "value": base64.b64encode(json.dumps({"seq": offset}).encode()).decode(),
            "headers": [{"trace": list(b"abc")}],
        }

    batch = {"eventSource": "aws:kafka", "records": {"orders-0": [record(0), record(1)]}}
    assert await engine.handle_event_batch(batch) == {}
    assert await engine.handle_event_batch(batch) == {}  # redelivered: nothing doubles
    await engine.drain()
    assert json.loads((await engine.get_state("Groups", "customer-1"))["seen"]) == [0, 1]
    headers = app.applied[0][2]
    assert headers["kafka.offset"] == "0" and headers["kafka.partition"] == "0"
    assert headers["kafka.timestamp"] == "1700000000000" and headers["trace"] == "abc"
    assert headers["restate.subscription.id"] == sub["id"]

    async def broken(request: Any) -> Any:
        raise RuntimeError("down")

    with pytest.raises(BatchError):
        await handle_batch(batch, engine.subscriptions, engine.registry, broken)


async def test_dynamodb_stream_poller_on_dynamodb_local(env: TestEnvironment) -> None:
    aws_test_env()
    endpoint = SERVERS.dynamodb()
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=REGION)
    table = f"ev-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    engine = env.engine
    await engine.create_subscription(
        {"source": f"dynamodb://{table}", "sink": "service://Sink/take"}
    )
    for n in range(5):
        ddb.put_item(TableName=table, Item={"id": {"S": f"i{n}"}, "n": {"N": str(n)}})
    poller = DynamoDbStreamPoller(engine, ddb, streams, table)
    delivered = 0
    for _ in range(20):
        delivered += await poller.poll_once()
        if delivered >= 5:
            break
    await engine.drain()
    assert delivered == 5
    bodies = [event for _k, event, _h in app.applied]
    assert [b["NewImage"]["id"]["S"] for b in bodies] == [f"i{n}" for n in range(5)]
    assert all(b["eventName"] == "INSERT" for b in bodies)
    assert app.applied[0][2]["dynamodb.event_name"] == "INSERT"
    poller2 = DynamoDbStreamPoller(engine, ddb, streams, table)  # a restart from the start
    await poller2.poll_once()
    await engine.drain()
    assert len(app.applied) == 5  # redelivered records are the same invocations
