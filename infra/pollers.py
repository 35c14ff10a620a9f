"""Local pollers for event subscriptions: what Lambda's event source mappings do on AWS.

:class:`SqsPoller` receives messages from an SQS queue (moto's server locally), hands them to
:meth:`invoker.engine.Engine.handle_event_batch` in the shape of a Lambda SQS event, and deletes
the messages that were accepted; failed ones become visible again after the queue's visibility
timeout (a FIFO group waits for them, so order holds). :class:`DynamoDbStreamPoller` reads a
table's stream shard by shard (DynamoDB Local), hands each page over as a Lambda DynamoDB
Streams event, and advances past a page only when every record was accepted (it re-reads from
the earliest failure otherwise).

:class:`Pollers` starts one poller per ``sqs://`` and ``dynamodb://`` subscription and stops the
pollers of deleted ones. Exactly-once comes from the subscription's idempotency keys, not from
the poller: a message received twice (a crash before the delete) is one invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from invoker.subscriptions import parse_source

log = logging.getLogger("restate_lambda.pollers")


class BatchHandler(Protocol):
    """What the pollers feed (implemented by :class:`invoker.engine.Engine`)."""

    async def handle_event_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Deliver a Lambda-shaped batch; the partial batch response."""
        ...


class SqsPoller:
    """Polls one queue. ``client`` is a boto3 SQS client."""

    def __init__(
        self,
        handler: BatchHandler,
        client: Any,
        queue: str,
        *,
        region: str = "us-east-1",
        wait_s: int = 1,
        batch_size: int = 10,
    ) -> None:
        self.handler = handler
        self.client = client
        self.queue = queue
        self.region = region
        self.wait_s = wait_s
        self.batch_size = batch_size
        self._url: str | None = None

    async def url(self) -> str:
        """The queue URL (looked up once)."""
        if self._url is None:
            answer = await asyncio.to_thread(self.client.get_queue_url, QueueName=self.queue)
            self._url = str(answer["QueueUrl"])
        return self._url

    async def poll_once(self) -> int:
        """Receive one batch, deliver it, delete what was accepted; how many were received."""
        url = await self.url()
        answer = await asyncio.to_thread(
            self.client.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages") or []
        if not messages:
            return 0
        records = [self._record(m) for m in messages]
        result = await self.handler.handle_event_batch({"Records": records})
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            await asyncio.to_thread(self.client.delete_message_batch, QueueUrl=url, Entries=done)
        return len(messages)

    def _record(self, m: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            name: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType")}
            for name, v in (m.get("MessageAttributes") or {}).items()
        }
        return {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m.get("Body", ""),
            "attributes": dict(m.get("Attributes") or {}),
            "messageAttributes": attributes,
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{self.region}:000000000000:{self.queue}",
        }


class DynamoDbStreamPoller:
    """Polls the stream of one table. ``dynamodb`` and ``streams`` are boto3 clients."""

    def __init__(
        self, handler: BatchHandler, dynamodb: Any, streams: Any, table: str, *, limit: int = 100
    ) -> None:
        self.handler = handler
        self.dynamodb = dynamodb
        self.streams = streams
        self.table = table
        self.limit = limit
        self._iterators: dict[str, str | None] = {}
        self._arn: str | None = None

    async def poll_once(self) -> int:
        """Read one page of every open shard; how many records were delivered."""
        if self._arn is None:
            desc = await asyncio.to_thread(self.dynamodb.describe_table, TableName=self.table)
            self._arn = str(desc["Table"]["LatestStreamArn"])
        stream = await asyncio.to_thread(self.streams.describe_stream, StreamArn=self._arn)
        total = 0
        for shard in stream["StreamDescription"].get("Shards") or []:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                it = await asyncio.to_thread(
                    self.streams.get_shard_iterator,
                    StreamArn=self._arn,
                    ShardId=shard_id,
                    ShardIteratorType="TRIM_HORIZON",
                )
                self._iterators[shard_id] = it["ShardIterator"]
            iterator = self._iterators[shard_id]
            if iterator is None:
                continue  # a closed shard, read to its end
            page = await asyncio.to_thread(
                self.streams.get_records, ShardIterator=iterator, Limit=self.limit
            )
            records = page.get("Records") or []
            for r in records:
                r.setdefault("eventSourceARN", self._arn)
                r["eventSource"] = "aws:dynamodb"
            if records:
                result = await self.handler.handle_event_batch({"Records": records})
                failures = result.get("batchItemFailures") or []
                if failures:
                    seq = failures[0]["itemIdentifier"]
                    again = await asyncio.to_thread(
                        self.streams.get_shard_iterator,
                        StreamArn=self._arn,
                        ShardId=shard_id,
                        ShardIteratorType="AT_SEQUENCE_NUMBER",
                        SequenceNumber=seq,
                    )
                    self._iterators[shard_id] = again["ShardIterator"]
                    continue
                total += len(records)
            self._iterators[shard_id] = page.get("NextShardIterator")
        return total


class Pollers:
    """One poller task per ``sqs://`` / ``dynamodb://`` subscription (see the module docstring).

    Args:
        engine: the engine (subscriptions and batch delivery).
        clients: ``name -> boto3 client`` factory for ``"sqs"``, ``"dynamodb"`` and
            ``"dynamodbstreams"``.
        interval_s: pause between polls of an idle source, and between subscription re-reads.
    """

    def __init__(self, engine: Any, clients: Any, *, interval_s: float = 1.0) -> None:
        self.engine = engine
        self.clients = clients
        self.interval_s = interval_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def sync(self) -> None:
        """Start pollers for new subscriptions, stop those of deleted ones."""
        wanted: dict[str, Any] = {}
        for sub in await self.engine.subscriptions.all():
            scheme, name = parse_source(sub.source)
            if scheme == "sqs":
                wanted[f"sqs://{name}"] = lambda n=name: SqsPoller(
                    self.engine, self.clients("sqs"), n
                )
            elif scheme == "dynamodb":
                wanted[f"dynamodb://{name}"] = lambda n=name: DynamoDbStreamPoller(
                    self.engine, self.clients("dynamodb"), self.clients("dynamodbstreams"), n
                )
        for source in list(self._tasks):
            if source not in wanted:
                self._tasks.pop(source).cancel()
        for source, make in wanted.items():
            if source not in self._tasks:
                self._tasks[source] = asyncio.ensure_future(self._run(source, make()))

    async def _run(self, source: str, poller: SqsPoller | DynamoDbStreamPoller) -> None:
        while True:
            try:
                if await poller.poll_once() == 0:
                    await asyncio.sleep(self.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling %s failed", source)
                await asyncio.sleep(max(self.interval_s, 1.0))

    async def run(self) -> None:
        """Keep the pollers in step with the subscriptions until cancelled."""
        try:
            while True:
                try:
                    await self.sync()
                except Exception:
                    log.exception("reading subscriptions failed")
                await asyncio.sleep(self.interval_s * 5)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every poller."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


#: Environment of ``restate-lambda dev`` that turns the local pollers on: the endpoint of the
#: SQS server (moto) for ``sqs://`` subscriptions and of DynamoDB (Local) for ``dynamodb://``.
SQS_ENDPOINT_ENV = "RESTATE_LAMBDA_EVENTS_SQS_ENDPOINT_URL"
DYNAMODB_ENDPOINT_ENV = "RESTATE_LAMBDA_EVENTS_DYNAMODB_ENDPOINT_URL"


def dev_pollers(engine: Any, env: dict[str, str] | None = None) -> Pollers | None:
    """The pollers ``restate-lambda dev`` runs (``asyncio.ensure_future(pollers.run())``), or
    None when neither endpoint variable is set. Region from ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION`` (default ``us-east-1``); credentials as boto3 finds them."""
    import os

    environ = dict(os.environ) if env is None else env
    endpoints = {
        "sqs": environ.get(SQS_ENDPOINT_ENV) or None,
        "dynamodb": environ.get(DYNAMODB_ENDPOINT_ENV) or None,
    }
    endpoints["dynamodbstreams"] = endpoints["dynamodb"]
    if not any(endpoints.values()):
        return None
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    made: dict[str, Any] = {}

    def clients(name: str) -> Any:
        if name not in made:
            import boto3

            made[name] = boto3.client(name, endpoint_url=endpoints[name], region_name=region)
        return made[name]

    return Pollers(engine, clients)
