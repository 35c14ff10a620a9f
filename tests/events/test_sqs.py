"""SQS into a virtual object: per-group order, each message applied once, redelivery included.

The must-hold of issue 12: 1,000 messages across 20 FIFO message groups (moto's SQS server, the
local :class:`~infra.pollers.SqsPoller`) into ``Groups/apply``; every batch the poller receives
is delivered twice (a redelivery of the whole batch, as Lambda does after a timeout). A send
that fails takes the later events of its group with it into the batch's failures.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from backends.sqlite import SqliteBackend
from infra.pollers import SqsPoller
from infra.testing import TestEnvironment, running_environment
from invoker import keys
from invoker.store import decode_invocation
from tests.events import app
from tests.support.aws import REGION, SERVERS, aws_test_env

GROUPS = 20
PER_GROUP = 50


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[TestEnvironment]:
    app.applied.clear()
    async with running_environment(SqliteBackend(tmp_path / "db.sqlite")) as environment:
        await environment.mount("events", app.app)
        yield environment


class Twice:
    """Feeds every batch to the engine twice: a redelivery of the whole batch."""

    def __init__(self, env: TestEnvironment) -> None:
        self.env = env
        self.batches = 0

    async def handle_event_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        engine = self.env.engine
        first = await engine.handle_event_batch(batch)
        second = await engine.handle_event_batch(batch)
        assert first == second == {"batchItemFailures": []}
        self.batches += 1
        return second


def _sqs() -> Any:
    aws_test_env()
    return boto3.client("sqs", endpoint_url=SERVERS.s3(), region_name=REGION)


async def test_thousand_messages_twenty_groups_in_order_once(env: TestEnvironment) -> None:
    sqs = _sqs()
    name = f"events-{id(env)}.fifo"
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"},
    )["QueueUrl"]
    engine = env.engine
    sub = await engine.create_subscription(
        {"source": f"sqs://{name}", "sink": "service://Groups/apply"}
    )
    poller = SqsPoller(Twice(env), sqs, name, region=REGION, wait_s=0)
    received = 0
    # moto's FIFO receive slows down with the queue's length: send in rounds of a few messages
    # per group and drain each round (order across rounds is checked all the same).
    per_round = 2
    for first in range(0, PER_GROUP, per_round):
        for seq in range(first, min(first + per_round, PER_GROUP)):
            for g0 in range(0, GROUPS, 10):
                entries = [
                    {
                        "Id": str(g),
                        "MessageBody": json.dumps({"group": g, "seq": seq}),
                        "MessageGroupId": f"g{g}",
                        "MessageDeduplicationId": f"{g}-{seq}",
                    }
                    for g in range(g0, min(g0 + 10, GROUPS))
                ]
                sqs.send_message_batch(QueueUrl=url, Entries=entries)
        for _ in range(100):  # bounded
            n = await poller.poll_once()
            received += n
            await engine.drain()
            if n == 0:
                break
    await engine.drain()
    assert received == GROUPS * PER_GROUP
    for g in range(GROUPS):
        state = await engine.get_state("Groups", f"g{g}")
        assert json.loads(state["seen"]) == list(range(PER_GROUP)), f"group g{g}"
    assert len(app.applied) == GROUPS * PER_GROUP
    invocations = [
        decode_invocation(i.value) for i in await engine.backend.scan(keys.INV_PREFIX, keys.META)
    ]
    assert len([i for i in invocations if i.service == "Groups"]) == GROUPS * PER_GROUP
    _key, _seq, headers = app.applied[0]
    assert headers["restate.subscription.id"] == sub["id"]
    assert headers["sqs.message_group_id"] == _key
    assert "sqs.message_id" in headers


async def test_a_failed_message_fails_the_rest_of_its_group(env: TestEnvironment) -> None:
    """An event whose send fails is reported with the later events of its key, never after
    them: the queue redelivers them in order; other keys go on."""
    from invoker.event_sources import handle_batch

    engine = env.engine
    await engine.create_subscription({"source": "sqs://q.fifo", "sink": "service://Groups/apply"})
    records = [
        {
            "messageId": f"m{g}-{s}",
            "body": json.dumps({"seq": s}),
            "attributes": {"MessageGroupId": f"g{g}"},
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:1:q.fifo",
        }
        for s in range(3)
        for g in range(2)
    ]
    calls: list[str] = []

    async def send(request: Any) -> Any:
        calls.append(request.idempotency_key)
        if request.idempotency_key.endswith("m0-1"):
            raise RuntimeError("storage unavailable")
        return await engine.send(request)

    result = await handle_batch({"Records": records}, engine.subscriptions, engine.registry, send)
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == ["m0-1", "m0-2"]
    assert not any(c.endswith("m0-2") for c in calls)
    again = await engine.handle_event_batch({"Records": records})  # the redelivery
    assert again == {"batchItemFailures": []}
    await engine.drain()
    assert json.loads((await engine.get_state("Groups", "g0"))["seen"]) == [0, 1, 2]
    assert json.loads((await engine.get_state("Groups", "g1"))["seen"]) == [0, 1, 2]
