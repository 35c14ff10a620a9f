"""Lambda event-source batches (SQS, Kinesis, DynamoDB Streams, MSK / Kafka) as subscription events.

:func:`handle_batch` is what the events Lambda (``infra.lambdas.events_handler``) and the local
pollers run: it finds the subscriptions of the batch's source, turns its records into
:class:`~invoker.subscriptions.Event` s (id, key, body, metadata headers) and delivers them, then
answers Lambda's partial batch response:

=================  ===================  =======================  ================================
source             event id             object key               failure reported as
=================  ===================  =======================  ================================
SQS                ``messageId``        FIFO ``MessageGroupId``  every failed ``messageId``
Kinesis            ``eventID``          ``partitionKey``         the earliest failed sequence no.
DynamoDB Streams   ``eventID``          the item's key, JSON     the earliest failed sequence no.
MSK / Kafka        topic-partition-off  the record key           the whole batch (an error)
=================  ===================  =======================  ================================

Metadata goes into headers as restate-server does for Kafka (``kafka.offset``,
``kafka.partition``, ``kafka.timestamp``, plus the record's own headers), and likewise
``sqs.*``, ``kinesis.*`` and ``dynamodb.*`` for the other sources.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from invoker.registry import Registry
from invoker.subscriptions import Event, Send, Subscriptions, deliver

log = logging.getLogger("restate_lambda.events")


class BatchError(Exception):
    """Events of a batch without partial-failure reporting were not accepted: retry it all."""


def source_of(record: dict[str, Any]) -> tuple[str, str]:
    """(scheme, name) of the source a Lambda record came from."""
    arn = str(record.get("eventSourceARN") or record.get("eventSourceArn") or "")
    origin = str(record.get("eventSource") or "")
    if origin == "aws:sqs":
        return "sqs", arn.rsplit(":", 1)[-1]
    if origin == "aws:kinesis":
        return "kinesis", arn.split(":stream/", 1)[-1]
    if origin == "aws:dynamodb":
        return "dynamodb", arn.split(":table/", 1)[-1].split("/stream/", 1)[0]
    raise ValueError(f"unsupported event source {origin!r}")


def sqs_event(r: dict[str, Any]) -> Event:
    """An SQS message."""
    attrs = r.get("attributes") or {}
    headers = [("sqs.message_id", str(r["messageId"]))]
    for name, header in (
        ("MessageGroupId", "sqs.message_group_id"),
        ("SequenceNumber", "sqs.sequence_number"),
        ("SentTimestamp", "sqs.sent_timestamp"),
        ("ApproximateReceiveCount", "sqs.approximate_receive_count"),
    ):
        if attrs.get(name) is not None:
            headers.append((header, str(attrs[name])))
    for name, value in (r.get("messageAttributes") or {}).items():
        if isinstance(value, dict) and value.get("stringValue") is not None:
            headers.append((name, str(value["stringValue"])))
    body = str(r.get("body") or "").encode()
    return Event(str(r["messageId"]), attrs.get("MessageGroupId"), body, headers)


def kinesis_event(r: dict[str, Any]) -> Event:
    """A Kinesis record (data base64-decoded)."""
    k = r["kinesis"]
    headers = [
        ("kinesis.partition_key", str(k["partitionKey"])),
        ("kinesis.sequence_number", str(k["sequenceNumber"])),
    ]
    if k.get("approximateArrivalTimestamp") is not None:
        headers.append(
            ("kinesis.approximate_arrival_timestamp", str(k["approximateArrivalTimestamp"]))
        )
    event_id = str(r.get("eventID") or k["sequenceNumber"])
    return Event(event_id, str(k["partitionKey"]), base64.b64decode(k.get("data") or ""), headers)


def dynamodb_event(r: dict[str, Any]) -> Event:
    """A DynamoDB Streams record: the body is its ``dynamodb`` section as JSON (``Keys``,
    ``NewImage``, ``OldImage`` in DynamoDB's attribute-value format) plus ``eventName``."""
    d = r["dynamodb"]
    key = json.dumps(d.get("Keys") or {}, sort_keys=True, separators=(",", ":"))
    headers = [
        ("dynamodb.event_id", str(r["eventID"])),
        ("dynamodb.event_name", str(r.get("eventName") or "")),
        ("dynamodb.sequence_number", str(d.get("SequenceNumber") or "")),
    ]
    body = json.dumps({"eventName": r.get("eventName"), **d}, default=str).encode()
    return Event(str(r["eventID"]), key, body, headers)


def kafka_events(batch: dict[str, Any]) -> tuple[str, list[Event]]:
    """The topic and records of an MSK / self-managed Kafka batch."""
    topic = ""
    events = []
    for records in (batch.get("records") or {}).values():
        for r in records:
            topic = str(r["topic"])
            headers = [
                ("kafka.offset", str(r["offset"])),
                ("kafka.partition", str(r["partition"])),
                ("kafka.timestamp", str(r.get("timestamp", ""))),
            ]
            for h in r.get("headers") or []:
                for name, raw in h.items():
                    headers.append((name, bytes(raw).decode("utf-8", "replace")))
            key = base64.b64decode(r["key"]).decode("utf-8", "replace") if r.get("key") else None
            value = base64.b64decode(r.get("value") or "")
            events.append(Event(f"{topic}-{r['partition']}-{r['offset']}", key, value, headers))
    return topic, events


async def handle_batch(
    batch: dict[str, Any], subscriptions: Subscriptions, registry: Registry, send: Send
) -> dict[str, Any]:
    """Deliver one Lambda event-source batch to every subscription of its source; answer the
    partial batch response (see the module docstring).

    Raises:
        BatchError: a Kafka batch had failures (Lambda retries the whole batch).
    """
    if batch.get("eventSource") in ("aws:kafka", "SelfManagedKafka"):
        topic, events = kafka_events(batch)
        failed: set[str] = set()
        for sub in await subscriptions.for_source("kafka", topic):
            failed.update(await deliver(send, registry, sub, events))
        if failed:
            raise BatchError(f"{len(failed)} Kafka records were not accepted")
        return {}
    records = batch.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    scheme, name = source_of(records[0])
    convert = {"sqs": sqs_event, "kinesis": kinesis_event, "dynamodb": dynamodb_event}[scheme]
    events = [convert(r) for r in records]
    subs = await subscriptions.for_source(scheme, name)
    if not subs:
        log.warning("no subscription for %s://%s: %d events dropped", scheme, name, len(events))
    failed_ids: set[str] = set()
    for sub in subs:
        failed_ids.update(await deliver(send, registry, sub, events))
    if scheme == "sqs":
        return {
            "batchItemFailures": [{"itemIdentifier": e.id} for e in events if e.id in failed_ids]
        }
    # Streams: report the earliest failure; Lambda resumes the shard there.
    for record, event in zip(records, events, strict=True):
        if event.id in failed_ids:
            seq = (record.get("kinesis") or record.get("dynamodb") or {}).get("sequenceNumber") or (
                record.get("dynamodb") or {}
            ).get("SequenceNumber")
            return {"batchItemFailures": [{"itemIdentifier": str(seq)}]}
    return {"batchItemFailures": []}
