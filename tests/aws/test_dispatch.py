"""Work through a queue: engines with ``run_locally=False`` dispatch, a worker drives.

Duplicated, reordered, early and late deliveries are all harmless because claims are
conditional writes. Time is a manual clock; the queue honours delays on that clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from infra.local_lambda import LocalLambda
from invoker.api import InvokeRequest, Target
from invoker.dispatch import WorkMessage, delay_seconds, schedule_upcoming
from restate_lambda.clock import SystemClock
from tests.aws import handlers
from tests.aws.fake_queue import Topology, record, topology


@pytest.fixture
async def topo(local_lambda: LocalLambda) -> AsyncIterator[Topology]:
    async with topology(local_lambda.endpoint_url, local_lambda.arn("sdk", "1")) as t:
        yield t


def req(service: str, handler: str, body: object, key: str | None = None) -> InvokeRequest:
    return InvokeRequest(Target(service, handler, key), json.dumps(body).encode())


async def output(topo: Topology, inv_id: str) -> object:
    outcome = await topo.ingress.output(inv_id)
    assert outcome.ok, outcome
    return json.loads(outcome.value)


def test_delay_seconds() -> None:
    assert delay_seconds(1_000, 1_000) == 0
    assert delay_seconds(1_001, 1_000) == 1  # never early
    assert delay_seconds(1_000 + 900_000, 1_000) == 900
    assert delay_seconds(1_000 + 900_001, 1_000) is None  # beyond SQS: the sweeper's job
    assert WorkMessage.decode(WorkMessage("inv_1", 5).encode()) == WorkMessage("inv_1", 5)
    with pytest.raises(ValueError):
        WorkMessage.decode('{"nope": 1}')


async def test_send_goes_through_the_queue(topo: Topology) -> None:
    sent = await topo.send(req("Greeter", "greet", "queue"))
    assert not topo.ingress.pending()  # nothing runs in the ingress
    assert [m.inv_id for m in topo.queue.pending()] == [sent.invocation_id]
    assert await topo.pump() == 1
    assert await output(topo, sent.invocation_id) == "Hello, queue!"


async def test_blocking_call_runs_inline(topo: Topology) -> None:
    outcome = await topo.ingress.call(req("Greeter", "greet", "inline"))
    assert json.loads(outcome.value) == "Hello, inline!"
    assert topo.queue.sent == 0


async def test_duplicate_deliveries_run_once(topo: Topology) -> None:
    sent = await topo.send(req("Counter", "add", 5, key="dup"))
    (message,) = topo.queue.take()
    result = await topo.deliver(message, dict(message), dict(message))  # three copies, one batch
    assert result.done == 3 and not result.failed
    await topo.deliver(message)  # and once more, after completion
    assert await topo.pump() == 0
    assert await output(topo, sent.invocation_id) == 5
    state = await topo.ingress.get_state("Counter", "dup")
    assert json.loads(state["count"]) == 5


async def test_reordered_deliveries(topo: Topology) -> None:
    first = await topo.send(req("Counter", "add", 1, key="order"))
    second = await topo.send(req("Counter", "add", 2, key="order"))
    messages = topo.queue.take()
    # the second add waits in the object's inbox; its message may come first, or never
    await topo.deliver(*reversed(messages))
    await topo.pump()
    assert await output(topo, first.invocation_id) == 1
    assert await output(topo, second.invocation_id) == 3
    # a stale copy of either message, long after, does nothing
    await topo.deliver(*messages)
    assert json.loads((await topo.ingress.get_state("Counter", "order"))["count"]) == 3


async def test_sleep_and_awakeable_wake_through_delayed_messages(topo: Topology) -> None:
    # The handler (official SDK) computes its wake-up time from wall time, the engine compares
    # it with the manual clock: bound it by wall time around the call, and later advance the
    # manual clock to it, so a slow machine (seconds between the two) changes nothing.
    before = SystemClock().now_ms()
    sent = await topo.send(req("Flow", "run", 2, key="wf1"))
    await topo.pump()
    after = SystemClock().now_ms()
    inv_id = sent.invocation_id
    assert (await topo.ingress.describe_invocation(inv_id))["status"] == "suspended"
    (wake,) = topo.queue.pending()
    assert wake.inv_id == inv_id and wake.due_ms is not None
    assert before + 2_000 <= wake.due_ms <= after + 2_000
    assert wake.due_ms > topo.clock.now_ms()

    # delivered early (clock skew): nothing fires, the message comes back later
    early = topo.queue.messages.pop()
    await topo.deliver(record(early[1], early[2]))
    assert (await topo.ingress.describe_invocation(inv_id))["status"] == "suspended"
    assert [m.due_ms for m in topo.queue.pending()] == [wake.due_ms]

    topo.clock.advance(wake.due_ms - topo.clock.now_ms() + 1_000)  # SQS delays: whole seconds
    await topo.pump()
    state = await topo.ingress.get_state("Flow", "wf1")
    awakeable_id = json.loads(state["awakeable"])
    await topo.ingress.resolve_awakeable(awakeable_id, b'"yes"')
    await topo.pump()
    assert await output(topo, inv_id) == "woke and got yes"
    assert handlers.CALLS[("sdk", "flow-start")] >= 1


async def test_retry_backoff_is_a_delayed_message(topo: Topology) -> None:
    before = handlers.CALLS[("sdk", "fail")]
    sent = await topo.send(req("Greeter", "fail", "x"))
    await topo.pump()
    assert handlers.CALLS[("sdk", "fail")] == before + 1
    described = await topo.ingress.describe_invocation(sent.invocation_id)
    assert described["status"] == "backing-off"
    (retry,) = topo.queue.pending()
    assert retry.due_ms is not None and retry.due_ms > topo.clock.now_ms()
    topo.clock.advance(1000 * (delay_seconds(retry.due_ms, topo.clock.now_ms()) or 0))
    await topo.pump()
    assert handlers.CALLS[("sdk", "fail")] == before + 2
    await topo.ingress.manage_invocation(sent.invocation_id, "kill")


async def upcoming(topo: Topology) -> int:
    engine = topo.ingress
    assert engine.dispatcher is not None
    return await schedule_upcoming(engine.backend, engine.clock, engine.dispatcher, 70_000)


async def test_far_timers_wait_in_the_store_for_the_sweeper(topo: Topology) -> None:
    sent = await topo.send(req("Flow", "run", 3600, key="far"))
    await topo.pump()
    assert topo.queue.pending() == []  # an hour away: nothing in the queue, nothing to pay
    assert await upcoming(topo) == 0
    topo.clock.advance(3600_000 - 30_000)
    assert await upcoming(topo) == 1  # the sweeper's look-ahead (70 s)
    (wake,) = topo.queue.pending()
    assert wake.inv_id == sent.invocation_id and wake.due_ms is not None
    # the wake-up time is the handler's wall time + 1 h: advance the manual clock to it
    topo.clock.advance(max(0, wake.due_ms - topo.clock.now_ms()) + 1_000)
    await topo.pump()
    state = await topo.ingress.get_state("Flow", "far")
    assert "awakeable" in state

    # without the look-ahead message the sweeper's tick fires it too (a second, idempotently)
    sent2 = await topo.send(req("Flow", "run", 3600, key="far2"))
    await topo.pump()
    due = SystemClock().now_ms() + 3600_000  # at or after the handler's wall time + 1 h
    topo.clock.advance(max(3601_000, due - topo.clock.now_ms()))
    await topo.ingress.tick()
    await topo.ingress.drain()
    await topo.pump()
    assert "awakeable" in await topo.ingress.get_state("Flow", "far2")
    assert sent2.invocation_id


async def test_failures_are_reported_and_poison_is_dropped(
    topo: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await topo.send(req("Greeter", "greet", "x"))
    (message,) = topo.queue.take()

    async def broken(inv_id: str, before: object = None) -> None:
        raise RuntimeError("storage down")

    monkeypatch.setattr(topo.worker, "drive", broken)
    poison = {"messageId": "poison", "body": "not json"}
    result = await topo.deliver(message, poison)
    assert result.failed == [message["messageId"]] and result.dropped == 1
    assert result.lambda_response() == {
        "batchItemFailures": [{"itemIdentifier": message["messageId"]}]
    }
    monkeypatch.undo()
    await topo.deliver(message)  # the redelivery succeeds
    assert await output(topo, sent.invocation_id) == "Hello, x!"
