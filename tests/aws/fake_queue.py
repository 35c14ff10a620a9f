"""An in-memory SQS stand-in with delays on an injected clock, and engines wired to it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from backends.memory import MemoryBackend
from invoker.api import InvokeRequest, SendResult
from invoker.dispatch import WorkMessage, delay_seconds
from invoker.engine import RuntimeEngine
from invoker.lambda_transport import LambdaTransport
from invoker.transport import Transports
from invoker.worker import BatchResult, work_batch
from restate_lambda.clock import ManualClock, SystemClock

_ids = itertools.count(1)


@dataclass
class FakeQueue:
    """A :class:`~invoker.dispatch.Dispatcher` that keeps messages with their visibility time."""

    clock: ManualClock
    messages: list[tuple[int, str, WorkMessage]] = field(default_factory=list)
    sent: int = 0

    async def dispatch(self, inv_id: str) -> None:
        self._put(WorkMessage(inv_id), 0)

    async def schedule(self, inv_id: str, due_ms: int) -> None:
        delay = delay_seconds(due_ms, self.clock.now_ms())
        if delay is not None:
            self._put(WorkMessage(inv_id, due_ms), delay)

    def _put(self, message: WorkMessage, delay_s: int) -> None:
        self.sent += 1
        self.messages.append((self.clock.now_ms() + delay_s * 1000, f"m{next(_ids)}", message))

    def take(self) -> list[dict[str, Any]]:
        """Remove and return the visible messages as SQS event records."""
        now = self.clock.now_ms()
        visible = [m for m in self.messages if m[0] <= now]
        self.messages = [m for m in self.messages if m[0] > now]
        return [record(mid, msg) for _at, mid, msg in visible]

    def has_visible(self) -> bool:
        """Whether a message can be received now."""
        now = self.clock.now_ms()
        return any(at <= now for at, _id, _m in self.messages)

    def pending(self) -> list[WorkMessage]:
        """Messages not yet taken (visible or delayed)."""
        return [m for _at, _id, m in self.messages]


def record(message_id: str, message: WorkMessage) -> dict[str, Any]:
    """An SQS event record carrying ``message``."""
    return {"messageId": message_id, "body": message.encode(), "eventSource": "aws:sqs"}


@dataclass
class Topology:
    """An ingress engine and a worker engine on one store and one queue (like two Lambdas)."""

    clock: ManualClock
    queue: FakeQueue
    ingress: RuntimeEngine
    worker: RuntimeEngine

    async def send(self, request: InvokeRequest) -> SendResult:
        """Send through the ingress engine and let its dispatch reach the queue."""
        result = await self.ingress.send(request)
        await self.ingress.drain()
        return result

    async def pump(self, rounds: int = 100) -> int:
        """Deliver visible messages to the worker until none are left; return how many."""
        delivered = 0
        for _ in range(rounds):
            records = self.queue.take()
            if not records:
                await self.ingress.drain()
                if not self.queue.has_visible():
                    return delivered
                continue
            delivered += len(records)
            result = await work_batch(self.worker, records)
            assert not result.failed, result
        raise AssertionError("the queue did not drain")

    async def deliver(self, *records: dict[str, Any]) -> BatchResult:
        """Hand exactly these records to the worker."""
        return await work_batch(self.worker, list(records))


@asynccontextmanager
async def topology(endpoint_url: str, deployment_arn: str) -> AsyncIterator[Topology]:
    """Two engines (``run_locally=False``) on a memory store, dispatching through a fake queue."""
    # handlers compute sleep wake-up times from their own wall clock: start the manual one there
    clock = ManualClock(SystemClock().now_ms())
    queue = FakeQueue(clock)
    backend = MemoryBackend()
    engines = []
    for _ in range(2):
        transports = Transports(lambda_=LambdaTransport(endpoint_url=endpoint_url))
        engines.append(
            RuntimeEngine(backend, clock, transports, run_locally=False, dispatcher=queue)
        )
    ingress, worker = engines
    await ingress.start()
    await ingress.register_deployment(arn=deployment_arn)
    await worker.start()
    try:
        yield Topology(clock, queue, ingress, worker)
    finally:
        for engine in engines:
            await engine.close()
        await backend.close()
