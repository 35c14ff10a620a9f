"""Event subscriptions: Restate's ``/subscriptions`` API and the delivery of event batches.

A subscription (``{id, source, sink, options}``, restate-server 1.7's shape) connects a source
of events to a handler. Restate knows ``kafka://CLUSTER/TOPIC`` sources; this runtime also takes
``sqs://QUEUE`` (FIFO message groups become object keys), ``kinesis://STREAM`` (partition keys)
and ``dynamodb://TABLE`` (DynamoDB Streams; the item's key attributes). On AWS the events come
from Lambda event source mappings (``infra.lambdas.events_handler``); locally from pollers
(:mod:`infra.pollers`).

Delivery (:func:`deliver`) turns each event into a send whose idempotency key is
``{subscription id}/{event id}``, so a redelivered batch creates nothing twice. Events with the
same key go out one after the other, each awaited until durably accepted (for an exclusive
handler: queued in the key's inbox), so their order is the order of the inbox; different keys go
out concurrently. When a send fails, the later events of its key are not sent and are reported
failed with it (the source redelivers them, in order).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from backends.api import Backend, ConflictError, Delete, Put
from invoker import keys
from invoker import records as rec
from invoker.api import (
    BadRequestError,
    EngineError,
    InvokeRequest,
    NotFoundError,
    SendResult,
    Target,
)
from invoker.commit import Committer
from invoker.registry import Registry
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.subscriptions")

SCHEMES = ("kafka", "sqs", "kinesis", "dynamodb")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID = re.compile(r"^sub_1[0-9A-Za-z]{22}$")
#: Header carrying the subscription id, as restate-server sets it for Kafka records.
SUBSCRIPTION_HEADER = "restate.subscription.id"


class MetaError(BadRequestError):
    """A META0009 error (restate-server answers these with ``restate_code`` set)."""

    code = "META0009"


def new_subscription_id() -> str:
    """``sub_1`` and 22 base62 digits of 128 random bits (Restate's resource id shape)."""
    n = int.from_bytes(secrets.token_bytes(16), "big")
    digits = []
    for _ in range(22):
        n, r = divmod(n, 62)
        digits.append(_B62[r])
    return "sub_1" + "".join(reversed(digits))


def check_subscription_id(subscription_id: str) -> None:
    """400 in restate-server's words unless the id is well formed."""
    if _ID.match(subscription_id):
        return
    reason = "bad length" if subscription_id.startswith("sub_") else "bad format"
    raise BadRequestError(
        f"Invalid URL: Cannot parse `subscription` with value `{subscription_id}`: {reason}"
    )


def subscription_json(s: rec.SubscriptionRecord) -> dict[str, Any]:
    """A subscription as restate-server shows it."""
    return {"id": s.id, "source": s.source, "sink": s.sink, "options": dict(s.options)}


def parse_sink(sink: str) -> tuple[str, str]:
    """``service://Svc/handler`` -> (service, handler); META0009 otherwise."""
    scheme, sep, rest = sink.partition("://")
    parts = rest.split("/")
    if not sep or scheme != "service" or len(parts) != 2 or not all(parts):
        raise MetaError(
            f"[META0009] invalid sink URI '{sink}': must have a scheme segment, with supported "
            "schemes: [service]."
        )
    return parts[0], parts[1]


def parse_source(source: str) -> tuple[str, str]:
    """``scheme://name[/...]`` -> (scheme, everything after ``://``); META0009 otherwise."""
    scheme, sep, rest = source.partition("://")
    if not sep or scheme not in SCHEMES or not rest.strip("/"):
        raise MetaError(
            f"[META0009] invalid source URI '{source}': must have a scheme segment, with "
            f"supported schemes: [{', '.join(SCHEMES)}]."
        )
    return scheme, rest.strip("/")


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a batch: a unique id (the deduplication key), the object key it belongs
    to (``None``: no key), the payload and its metadata headers."""

    id: str
    key: str | None
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


Send = Callable[[InvokeRequest], Awaitable[SendResult]]


class Subscriptions:
    """Stores subscriptions (``subscriptions`` / ``sub/{id}``) and finds them by source."""

    def __init__(
        self, backend: Backend, committer: Committer, clock: Clock, registry: Registry
    ) -> None:
        self._backend = backend
        self._committer = committer
        self._clock = clock
        self._registry = registry

    async def create(self, body: dict[str, Any]) -> rec.SubscriptionRecord:
        """Validate ``{source, sink, options?}`` and store a new subscription."""
        source, sink, options = body.get("source"), body.get("sink"), body.get("options") or {}
        if not isinstance(source, str) or not isinstance(sink, str):
            missing = "source" if not isinstance(source, str) else "sink"
            raise EngineError(
                "Failed to deserialize the JSON body into the target type: missing field "
                f"`{missing}`",
                422,
            )
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()
        ):
            raise EngineError("options must be an object of strings", 422)
        scheme, _rest = parse_source(source)
        service, handler = parse_sink(sink)
        await self._registry.refresh_if_stale(0)
        if self._registry.handler(service, handler) is None:
            raise MetaError(
                f"[META0009] invalid sink URI '{sink}': cannot find service/handler specified "
                "in the sink URI."
            )
        sub_id = new_subscription_id()
        opts = dict(options)
        if scheme == "kafka":
            opts.setdefault("group.id", sub_id)
            opts.setdefault("client.id", "restate")
        record = rec.SubscriptionRecord(
            id=sub_id, source=source, sink=sink, options=opts, created_ms=self._clock.now_ms()
        )
        await self._committer.write(
            [Put(keys.SUBSCRIPTIONS, keys.subscription(sub_id), rec.encode(record), expect=0)]
        )
        return record

    async def all(self) -> list[rec.SubscriptionRecord]:
        """Every subscription, oldest first."""
        items = await self._backend.query(keys.SUBSCRIPTIONS, keys.SUBSCRIPTION_PREFIX)
        subs = [rec.decode(i.value, rec.SubscriptionRecord) for i in items]
        return sorted(subs, key=lambda s: (s.created_ms, s.id))

    async def get(self, subscription_id: str) -> rec.SubscriptionRecord:
        """One subscription; 400 for a malformed id, 404 if unknown."""
        check_subscription_id(subscription_id)
        item = await self._backend.get(keys.SUBSCRIPTIONS, keys.subscription(subscription_id))
        if item is None:
            raise NotFoundError(
                f"not found in the schema registry: subscription with id '{subscription_id}'"
            )
        return rec.decode(item.value, rec.SubscriptionRecord)

    async def delete(self, subscription_id: str) -> None:
        """Delete one subscription; 404 if unknown."""
        check_subscription_id(subscription_id)
        sk = keys.subscription(subscription_id)
        item = await self._backend.get(keys.SUBSCRIPTIONS, sk)
        if item is None:
            raise NotFoundError(
                f"not found in the schema registry: subscription with id '{subscription_id}'"
            )
        try:
            await self._committer.write([Delete(keys.SUBSCRIPTIONS, sk, expect=item.version)])
        except ConflictError:
            pass  # deleted concurrently

    async def for_source(self, scheme: str, name: str) -> list[rec.SubscriptionRecord]:
        """The subscriptions whose source is ``scheme://name`` (or ``scheme://.../name``)."""
        out = []
        for s in await self.all():
            try:
                sch, rest = parse_source(s.source)
            except MetaError:
                continue
            if sch == scheme and (rest == name or rest.rsplit("/", 1)[-1] == name):
                out.append(s)
        return out


async def deliver(
    send: Send,
    registry: Registry,
    subscription: rec.SubscriptionRecord,
    events: list[Event],
    *,
    max_keys_at_once: int = 32,
) -> list[str]:
    """Send ``events`` to the subscription's sink (see the module docstring); return the ids
    of the events that were not accepted (each key's first failure and everything after it)."""
    service, handler = parse_sink(subscription.sink)
    svc = registry.service(service)
    keyed = svc is not None and svc.kind != "service"
    by_key: dict[str | None, list[Event]] = {}
    for event in events:
        by_key.setdefault(event.key if keyed else None, []).append(event)
    slots = asyncio.Semaphore(max_keys_at_once)
    failed: list[str] = []

    async def one_key(key: str | None, queue: list[Event]) -> None:
        async with slots:
            for n, event in enumerate(queue):
                headers = [(SUBSCRIPTION_HEADER, subscription.id), *event.headers]
                request = InvokeRequest(
                    target=Target(service, handler, (key or "") if keyed else None),
                    body=event.body,
                    headers=headers,
                    idempotency_key=f"{subscription.id}/{event.id}",
                )
                try:
                    await send(request)
                except Exception as exc:
                    log.warning(
                        "event %s of %s not accepted (%r): it and %d later events of its key "
                        "are reported failed",
                        event.id,
                        subscription.source,
                        exc,
                        len(queue) - n - 1,
                    )
                    failed.extend(e.id for e in queue[n:])
                    return

    await asyncio.gather(*(one_key(k, q) for k, q in by_key.items()))
    return failed
