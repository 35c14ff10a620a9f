"""A step is durable before the next one runs: request-response without a channel (suspend
after each run), with a checkpoint channel (one invocation, each step checkpointed first), over
an HTTP/2-style stream (wait for the runtime's ack), and the opt-in eager runs (weaker).

The charge scenario: a handler draws an idempotency key, charges with it, then runs a step that
outlives the attempt; ``charge`` must run once, with the first key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

import restate_lambda as restate
from restate_lambda.checkpoint import CheckpointBatch
from restate_lambda.protocol import encode, encode_raw
from restate_lambda.protocol.framing import FrameDecoder, decode_all
from restate_lambda.protocol.messages import MessageType, parse, pb
from tests.sdk import durable_services as ds
from tests.sdk.fake_runtime import INVOCATION_ID, FakeRuntime, input_entry

T = MessageType
APP = restate.app(ds.SERVICES)
EAGER_APP = restate.app(ds.SERVICES, eager_runs=True)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ds.EVENTS.clear()
    ds.HOOKS.slow_started = None
    yield
    ds.HOOKS.slow_started = None
    ds.HOOKS.on_step = None


def charges() -> list[str]:
    return [e.removeprefix("charge ") for e in ds.EVENTS if e.startswith("charge ")]


def entry_types(entries: bytes) -> list[str]:
    return [MessageType(f.type).name for f in decode_all(entries)]


# --------------------------------------------------------------------------- the charge scenario


async def test_charge_once_by_default_request_response_without_channel() -> None:
    """Default settings, no checkpoint channel: each run is journaled (suspend, re-invoke)
    before the next step, so the killed attempt's retry replays key and charge."""
    ds.HOOKS.slow_started = kill = asyncio.Event()
    rt = FakeRuntime(APP, "Pay", "pay", b'"order-1"')
    out = await rt.run(kill)
    key = json.loads(out.last_output())
    assert charges() == [key]
    assert ds.EVENTS.count("slow") == 2
    # key, charge, slow (killed), slow again, then the output: one attempt per step
    assert rt.attempts == 5


async def test_charge_once_with_checkpoints_in_one_invocation() -> None:
    """With a checkpoint channel the steps run in one invocation, each checkpointed before the
    next; the killed attempt's checkpoints survive, so the retry replays key and charge."""
    ds.HOOKS.slow_started = kill = asyncio.Event()
    rt = FakeRuntime(APP, "Pay", "pay", b'"order-1"', checkpoints=True)
    out = await rt.run(kill)
    key = json.loads(out.last_output())
    assert charges() == [key]
    assert rt.attempts == 2
    assert [c.journal_index for c in rt.checkpoint_calls] == [1, 3, 5]


async def test_eager_runs_opt_in_charge_twice_with_two_keys() -> None:
    """The weaker opt-in: the killed attempt's values were never journaled, so its retry draws
    a new key and charges again. This is why it is not the default."""
    ds.HOOKS.slow_started = kill = asyncio.Event()
    rt = FakeRuntime(EAGER_APP, "Pay", "pay", b'"order-1"')
    out = await rt.run(kill)
    first, second = charges()
    assert first != second and json.loads(out.last_output()) == second


# --------------------------------------------------------------------------- checkpoints


async def test_checkpoints_make_each_step_durable_before_the_next() -> None:
    """Three steps, one invocation: each checkpoint holds the step's RunCommand and proposed
    completion at the journal index the runtime expects; the response holds the rest."""
    rt = FakeRuntime(APP, "Pay", "steps", b"3", checkpoints=True)
    seen: list[list[str]] = []

    async def gate(batch: CheckpointBatch) -> None:
        seen.append(list(ds.EVENTS))

    rt.gate = gate
    out = await rt.attempt()
    assert out is not None and out.types == ["OUTPUT_COMMAND", "END"]
    assert json.loads(out.last_output()) == ["s0", "s1", "s2"]
    assert seen == [["s0"], ["s0", "s1"], ["s0", "s1", "s2"]]
    batches = rt.checkpoint_calls
    assert [b.journal_index for b in batches] == [1, 3, 5]
    assert all(b.invocation_id == str(INVOCATION_ID) and b.token == "lease-1" for b in batches)
    assert all(entry_types(b.entries) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION"] for b in batches)
    assert out.headers["x-restate-journal-index"] == "7"
    # the journal the runtime built (output included) replays without running anything
    ds.EVENTS.clear()
    replay = await rt.attempt()
    assert replay is not None and replay.types == ["END"] and ds.EVENTS == []


async def test_handler_does_not_continue_before_the_checkpoint_returns() -> None:
    """While the first checkpoint is pending, the second step does not start."""
    rt = FakeRuntime(APP, "Pay", "steps", b"2", checkpoints=True)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def gate(batch: CheckpointBatch) -> None:
        if batch.journal_index == 1:
            entered.set()
            await release.wait()

    rt.gate = gate
    task = asyncio.ensure_future(rt.attempt())
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert ds.EVENTS == ["s0"] and not task.done()
    release.set()
    out = await asyncio.wait_for(task, 5)
    assert out is not None and out.types == ["OUTPUT_COMMAND", "END"]
    assert ds.EVENTS == ["s0", "s1"]


@pytest.mark.parametrize(
    ("failure", "code"),
    [(RuntimeError("store unavailable"), 503), (restate.CheckpointFencedError("lease lost"), 409)],
)
async def test_checkpoint_failure_stops_the_attempt(failure: Exception, code: int) -> None:
    """A failed or fenced checkpoint ends the attempt with an ErrorMessage only; the next step
    never runs; the step whose result was not durable runs again in the next attempt."""
    rt = FakeRuntime(APP, "Pay", "steps", b"3", checkpoints=True)

    async def gate(batch: CheckpointBatch) -> None:
        if batch.journal_index == 3:
            raise failure

    rt.gate = gate
    out = await rt.attempt()
    assert out is not None and out.types == ["ERROR"]
    assert out.last().code == code
    assert ds.EVENTS == ["s0", "s1"]
    assert out.headers["x-restate-journal-index"] == "3"
    rt.gate = None
    done = await rt.run()
    assert json.loads(done.last_output()) == ["s0", "s1", "s2"]
    assert ds.EVENTS == ["s0", "s1", "s1", "s2"]


async def test_notifications_returned_by_a_checkpoint_come_before_its_results() -> None:
    """A notification the runtime journaled ahead of the checkpoint (here the timer) is seen
    first, as it will be on replay: the race has the same winner in both."""
    rt = FakeRuntime(APP, "Pay", "race", b"", checkpoints=True)
    timer = pb().NotificationTemplate(completion_id=1)
    timer.void.SetInParent()
    rt.foreign = [encode_raw(T.SLEEP_COMPLETION_NOTIFICATION, timer.SerializeToString())]
    out = await rt.attempt()
    assert out is not None and json.loads(out.last_output()) == "timer"
    # a replay that picked the step would produce a different OutputCommand: mismatch 570
    replay = await rt.attempt()
    assert replay is not None and replay.types == ["END"]
    plain = FakeRuntime(APP, "Pay", "race", b"", checkpoints=True)
    out = await plain.attempt()
    assert out is not None and json.loads(out.last_output()) == "step"


async def test_channel_offered_by_headers_uses_the_endpoint_checkpointer() -> None:
    """A request with ``x-restate-checkpoint-token`` uses the endpoint's checkpointer; without
    the token the endpoint's checkpointer is not used (suspend after the step)."""
    batches: list[CheckpointBatch] = []

    class Recorder:
        async def checkpoint(self, batch: CheckpointBatch) -> bytes:
            batches.append(batch)
            return b""

    app = restate.app(ds.SERVICES, checkpointer=Recorder())
    from tests.sdk.fake_runtime import asgi_exchange

    body = _start(1) + input_entry(b"2")
    _, headers, raw = await asgi_exchange(
        app, "/invoke/Pay/steps", body, 6, headers={"x-restate-checkpoint-token": "t-1"}
    )
    assert [MessageType(f.type).name for f in decode_all(raw)] == ["OUTPUT_COMMAND", "END"]
    assert [(b.token, b.journal_index) for b in batches] == [("t-1", 1), ("t-1", 3)]
    assert headers["x-restate-journal-index"] == "5"
    batches.clear()
    _, headers, raw = await asgi_exchange(app, "/invoke/Pay/steps", body, 6)
    assert [MessageType(f.type).name for f in decode_all(raw)][-1] == "SUSPENSION"
    assert batches == [] and "x-restate-journal-index" not in headers


def _start(known: int) -> bytes:
    return encode(
        pb().StartMessage(
            id=INVOCATION_ID.to_bytes(), debug_id=str(INVOCATION_ID), known_entries=known
        )
    )


# --------------------------------------------------------------------------- streams (HTTP/2)


async def test_stream_waits_for_the_runtime_ack_before_the_next_step() -> None:
    """Bidirectional mode: after proposing a step the handler waits for the runtime's
    RunCompletionNotification; the next step starts only after it arrives."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    decoder = FrameDecoder()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            for f in decoder.feed(message.get("body", b"")):
                outbox.put_nowait((f.type, parse(f.type, f.payload)))

    scope = {
        "type": "http",
        "http_version": "2",
        "method": "POST",
        "path": "/invoke/Pay/steps",
        "headers": [(b"content-type", b"application/vnd.restate.invocation.v6")],
    }
    task = asyncio.ensure_future(APP(scope, receive, send))
    inbox.put_nowait(
        {"type": "http.request", "body": _start(1) + input_entry(b"2"), "more_body": True}
    )

    async def next_frame() -> tuple[int, Any]:
        return await asyncio.wait_for(outbox.get(), 5)

    for i, cid in enumerate((1, 2)):
        assert (await next_frame())[0] == T.RUN_COMMAND
        t, proposal = await next_frame()
        assert t == T.PROPOSE_RUN_COMPLETION and proposal.result_completion_id == cid
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert ds.EVENTS == [f"s{j}" for j in range(i + 1)] and outbox.empty()
        ack = pb().NotificationTemplate(completion_id=cid)
        ack.value.content = proposal.value
        frame = encode_raw(T.RUN_COMPLETION_NOTIFICATION, ack.SerializeToString())
        inbox.put_nowait({"type": "http.request", "body": frame, "more_body": cid == 1})
    t, output = await next_frame()
    assert t == T.OUTPUT_COMMAND and json.loads(output.value.content) == ["s0", "s1"]
    assert (await next_frame())[0] == T.END
    await asyncio.wait_for(task, 10)


def test_exchange_detects_offers_by_the_checkpoint_module_names() -> None:
    """The request handling looks for an offer without importing the checkpoint module."""
    from restate_lambda import checkpoint, exchange

    assert exchange._OFFER_TOKEN == checkpoint.HEADER_TOKEN
    assert exchange._OFFER_EXTENSION == checkpoint.ASGI_EXTENSION
