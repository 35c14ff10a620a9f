"""Dispatchers: how an engine that does not run invocations itself hands them to one that does.

On AWS the ingress and the sweeper do not drive invocations in background tasks (a Lambda sandbox
freezes as soon as its handler returns). Their engine has ``run_locally=False`` and an
:class:`SqsDispatcher`: "drive invocation X" becomes an SQS message, and the worker Lambda
(:mod:`invoker.worker`) drives X when the message arrives. Delivery is at least once and in any
order; that is harmless because every step of driving is a conditional write (a duplicate finds
the invocation completed, suspended or leased and does nothing), and the invocation's record is
durable *before* the message is sent, so a lost message only delays it until the sweeper's next
pass finds the record due.

Work due later (a sleep, a retry backoff, a delayed send) gets a message with ``DelaySeconds``
when it is due within SQS's 15 minutes (second precision); anything further out waits as a
durable record in the backend's due index, where the scheduled sweeper finds it (and, one sweep
ahead, schedules a delayed message for it: see :func:`schedule_upcoming`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Final

from backends.api import Backend
from invoker import keys
from invoker import records as rec
from invoker.ports import Dispatcher
from invoker.store import decode_invocation
from restate_lambda.clock import Clock

log = logging.getLogger("restate_lambda.dispatch")

#: SQS's longest ``DelaySeconds``.
MAX_DELAY_S: Final = 900


@dataclass(frozen=True, slots=True)
class WorkMessage:
    """The body of one dispatch message: drive ``inv_id`` (and fire what is due by ``due_ms``)."""

    inv_id: str
    due_ms: int | None = None

    def encode(self) -> str:
        """The message body (compact JSON)."""
        body: dict[str, Any] = {"inv": self.inv_id}
        if self.due_ms is not None:
            body["due"] = self.due_ms
        return json.dumps(body, separators=(",", ":"))

    @staticmethod
    def decode(body: str) -> WorkMessage:
        """Parse a message body; ValueError when it is not one of ours."""
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("inv"), str):
            raise ValueError(f"not a dispatch message: {body[:200]!r}")
        due = data.get("due")
        if due is not None and not isinstance(due, int):
            raise ValueError(f"bad due time in dispatch message: {body[:200]!r}")
        return WorkMessage(data["inv"], due)


def delay_seconds(due_ms: int, now_ms: int) -> int | None:
    """SQS ``DelaySeconds`` that delivers no earlier than ``due_ms`` (None: beyond 15 minutes)."""
    remaining = due_ms - now_ms
    if remaining <= 0:
        return 0
    seconds = -(-remaining // 1000)  # ceil: never early
    return seconds if seconds <= MAX_DELAY_S else None


class SqsDispatcher:
    """Dispatches by SQS message (``SendMessage``, with ``DelaySeconds`` for scheduled work).

    Args:
        queue_url: the work queue.
        clock: the engine's clock (for delays).
        client: a boto3 SQS client; default: one made lazily from ``region``/``endpoint_url``.
    """

    def __init__(
        self,
        queue_url: str,
        clock: Clock,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.queue_url = queue_url
        self.clock = clock
        self._client = client
        self._region = region
        self._endpoint_url = endpoint_url
        self._in_flight: set[tuple[str, int | None]] = set()
        self._client_lock = threading.Lock()
        #: messages sent (for tests and the cost benchmark)
        self.sent = 0

    @property
    def client(self) -> Any:
        """The SQS client (created on first use; boto3 is imported only then)."""
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "sqs",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}),
                )
            return self._client

    async def dispatch(self, inv_id: str) -> None:
        """Send "drive ``inv_id``" now."""
        await self._send(WorkMessage(inv_id), 0)

    async def schedule(self, inv_id: str, due_ms: int) -> None:
        """Send a delayed wake-up if ``due_ms`` is within 15 minutes; else leave it to the
        sweeper (the due record is already durable)."""
        delay = delay_seconds(due_ms, self.clock.now_ms())
        if delay is not None:
            await self._send(WorkMessage(inv_id, due_ms), delay)

    async def _send(self, message: WorkMessage, delay_s: int) -> None:
        # A send of the same message still in flight will arrive after the write that caused this
        # one (it has not even reached SQS yet), so a second copy adds nothing.
        key = (message.inv_id, message.due_ms)
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        try:
            await asyncio.to_thread(self._send_sync, message.encode(), delay_s)
        except Exception:
            # The record is durable and due: the sweeper re-dispatches it. Log, don't fail the
            # operation that caused the dispatch.
            log.exception("could not send %s to SQS; the sweeper will pick it up", message)
        finally:
            self._in_flight.discard(key)

    def _send_sync(self, body: str, delay_s: int) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay_s)
        self.sent += 1


async def schedule_upcoming(
    backend: Backend, clock: Clock, dispatcher: Dispatcher, horizon_ms: int, limit: int = 256
) -> int:
    """Give the dispatcher a delayed wake-up for every invocation due within ``horizon_ms``.

    The scheduled sweeper runs once a minute; this makes work that became due-soon since it was
    written (a long sleep nearing its end) wake on the second rather than on the next sweep.
    Returns how many invocations were scheduled.
    """
    now = clock.now_ms()
    items = await backend.due(now + horizon_ms, limit)
    soonest: dict[str, int] = {}
    for item in items:
        if item.due_ms is None or item.due_ms <= now or not item.pk.startswith(keys.INV_PREFIX):
            continue
        if item.sk != keys.META:
            continue  # notifications, waiters and outbox recovery: the sweeper's own business
        status = decode_invocation(item.value).status
        if status not in (rec.Status.SCHEDULED, rec.Status.BACKING_OFF, rec.Status.SUSPENDED):
            continue  # lease expiry and retention purges are the sweeper's too
        inv_id = item.pk[len(keys.INV_PREFIX) :]
        soonest[inv_id] = min(item.due_ms, soonest.get(inv_id, item.due_ms))
    await asyncio.gather(*(dispatcher.schedule(inv_id, due) for inv_id, due in soonest.items()))
    return len(soonest)
