"""The worker's unit of work: one dispatch message drives one invocation to quiescence.

A message names an invocation (see :class:`invoker.dispatch.WorkMessage`). The worker drives it
(claim, attempts, settle; the claim completes the sleeps that fell due) with
:meth:`invoker.engine.Engine.drive` until it completes, suspends, backs off or turns out to be
leased by another process. Every step is a conditional write, so duplicated, late or reordered
messages do nothing harmful: a second copy finds the invocation done or leased; an early copy
(clock skew, or a wake-up scheduled before a retry moved the due time) finds nothing due and
re-schedules itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoker.dispatch import WorkMessage

if TYPE_CHECKING:
    from invoker.engine import Engine

log = logging.getLogger("restate_lambda.worker")


@dataclass(slots=True)
class BatchResult:
    """What happened to one batch of SQS records."""

    failed: list[str] = field(default_factory=list)  # message ids to redeliver
    done: int = 0
    dropped: int = 0  # unparseable (poison) messages, logged and acknowledged

    def lambda_response(self) -> dict[str, Any]:
        """The ``ReportBatchItemFailures`` answer to SQS."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed]}


async def work(engine: Engine, message: WorkMessage) -> None:
    """Drive the invocation of ``message`` here (its claim takes in the sleeps that fell due);
    re-schedule a message that came early."""
    await engine.drive(message.inv_id)
    if (
        message.due_ms is not None
        and message.due_ms > engine.clock.now_ms()
        and engine.dispatcher is not None
    ):
        await engine.dispatcher.schedule(message.inv_id, message.due_ms)


async def work_batch(engine: Engine, records: Sequence[dict[str, Any]]) -> BatchResult:
    """Process the records of one SQS event concurrently, then wait for their side work.

    A record whose processing raised is reported for redelivery; an unparseable one is logged and
    acknowledged (redelivering it could never succeed).
    """
    result = BatchResult()
    jobs: list[tuple[str, asyncio.Future[None]]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            message = WorkMessage.decode(str(record.get("body", "")))
        except ValueError:
            log.error("dropping an unparseable work message %s: %r", message_id, record)
            result.dropped += 1
            continue
        jobs.append((message_id, asyncio.ensure_future(work(engine, message))))
    for message_id, job in jobs:
        try:
            await job
            result.done += 1
        except Exception:
            log.exception("work message %s failed; SQS will redeliver it", message_id)
            result.failed.append(message_id)
    await engine.drain()
    return result
