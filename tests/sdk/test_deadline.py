"""Voluntary suspension before the Lambda deadline, and checkpoints over HTTP, through the
Lambda handler with a fake Lambda context (its remaining time is a number the steps lower)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import restate_lambda as restate
from restate_lambda.asgi import AsgiApp
from restate_lambda.checkpoint import CheckpointBatch, CheckpointError
from restate_lambda.checkpoint_http import HttpCheckpointer
from restate_lambda.deadline import Deadline, DeadlinePolicy
from restate_lambda.endpoint import Endpoint
from restate_lambda.protocol import encode
from restate_lambda.protocol.framing import decode_all
from restate_lambda.protocol.messages import MessageType, parse, pb
from tests.sdk import durable_services as ds
from tests.sdk.fake_runtime import INVOCATION_ID, input_entry, journal_entry

V6 = "application/vnd.restate.invocation.v6"


class FakeLambdaContext:
    """A Lambda context whose remaining time each step lowers by ``step_ms``."""

    def __init__(self, remaining_ms: int, step_ms: int = 0) -> None:
        self.remaining_ms = remaining_ms
        self.step_ms = step_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms

    def step(self) -> None:
        self.remaining_ms -= self.step_ms


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ds.EVENTS.clear()
    yield
    ds.HOOKS.on_step = None


def lambda_call(
    endpoint: Endpoint,
    journal: int | list[bytes],
    context: Any,
    headers: dict[str, str] | None = None,
) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """Invoke ``Pay/steps`` through the Lambda handler with ``journal`` (or, for an int ``n``,
    a new invocation of ``n`` steps): (response headers, parsed messages)."""
    entries = [input_entry(str(journal).encode())] if isinstance(journal, int) else journal
    start = pb().StartMessage(
        id=INVOCATION_ID.to_bytes(), debug_id=str(INVOCATION_ID), known_entries=len(entries)
    )
    event = {
        "path": "/invoke/Pay/steps",
        "httpMethod": "POST",
        "headers": {"content-type": V6, **(headers or {})},
        "body": base64.b64encode(encode(start) + b"".join(entries)).decode(),
        "isBase64Encoded": True,
    }
    if isinstance(context, FakeLambdaContext):
        ds.HOOKS.on_step = context.step
    resp = AsgiApp(endpoint).lambda_handler(event, context)
    assert resp["statusCode"] == 200
    frames = decode_all(base64.b64decode(resp["body"]))
    return resp["headers"], [(MessageType(f.type).name, parse(f.type, f.payload)) for f in frames]


def names(messages: list[tuple[str, Any]]) -> list[str]:
    return [n for n, _ in messages]


class Recorder:
    """A checkpointer that accepts everything (and returns ``None``: no notifications)."""

    def __init__(self) -> None:
        self.batches: list[CheckpointBatch] = []

    async def checkpoint(self, batch: CheckpointBatch) -> None:
        self.batches.append(batch)


def endpoint(**options: Any) -> Endpoint:
    e = Endpoint().bind(*ds.SERVICES)
    for k, v in options.items():
        setattr(e, k, v)
    return e


# --------------------------------------------------------------------------- deadline


def test_threshold_is_the_margin_or_a_fraction_of_the_budget() -> None:
    """Default policy: 5 s, or 10 % of the time left at the start when that is larger."""
    assert Deadline(lambda: 30_000, DeadlinePolicy()).threshold_ms == 5_000
    assert Deadline(lambda: 900_000, DeadlinePolicy()).threshold_ms == 90_000
    custom = DeadlinePolicy(margin=timedelta(seconds=1), fraction=0.0)
    assert Deadline(lambda: 900_000, custom).threshold_ms == 1_000


def test_with_checkpoints_the_attempt_suspends_before_the_step_that_would_pass_the_deadline() -> (
    None
):
    """30 s budget, 9 s per step: after three checkpointed steps 3 s are left (< 5 s), so the
    fourth step's closure does not start (its RunCommand is journaled; the next attempt runs
    it); the attempt suspends on the runs it completed, all journaled already, so the runtime
    resumes it at once in a fresh invocation."""
    recorder = Recorder()
    ctx = FakeLambdaContext(30_000, step_ms=9_000)
    headers, out = lambda_call(
        endpoint(checkpointer=recorder), 5, ctx, {"x-restate-checkpoint-token": "t"}
    )
    assert ds.EVENTS == ["s0", "s1", "s2"]
    assert [b.journal_index for b in recorder.batches] == [1, 3, 5]
    assert names(out) == ["RUN_COMMAND", "SUSPENSION"]
    assert out[0][1].name == "step-3"
    assert list(out[1][1].waiting_completions) == [1, 2, 3]
    assert headers["x-restate-journal-index"] == "7"


def test_after_a_voluntary_suspension_the_next_invocation_continues() -> None:
    """A runtime that commits checkpoints and responses and resumes suspensions: five 9 s
    steps in 30 s invocations take two invocations, every step runs once, none is cut off."""
    journal = [input_entry(b"5")]

    class Store:
        async def checkpoint(self, batch: CheckpointBatch) -> bytes:
            assert batch.journal_index == len(journal)
            journal.extend(journal_entry(f.type, f.payload) for f in decode_all(batch.entries))
            return b""

    e = endpoint(checkpointer=Store())
    outcomes = []
    for _ in range(5):
        ctx = FakeLambdaContext(30_000, step_ms=9_000)
        headers, out = lambda_call(e, journal, ctx, {"x-restate-checkpoint-token": "t"})
        assert ctx.remaining_ms > 0, "a step ran past the deadline"
        assert headers["x-restate-journal-index"] == str(len(journal))
        for frame in decode_all(b"".join(encode(m) for _, m in out)):
            if frame.type not in (MessageType.SUSPENSION, MessageType.END):
                journal.append(journal_entry(frame.type, frame.payload))
        outcomes.append(names(out)[-1])
        if outcomes[-1] == "END":
            break
    assert outcomes == ["SUSPENSION", "END"]
    assert ds.EVENTS == ["s0", "s1", "s2", "s3", "s4"]


def test_without_channel_eager_opt_in_answers_everything_and_a_suspension() -> None:
    """Eager runs without a channel: the response carries the three steps (not durable until
    the runtime commits it) and a suspension on their completions."""
    ctx = FakeLambdaContext(30_000, step_ms=9_000)
    _, out = lambda_call(endpoint(eager_runs=True), 5, ctx)
    assert ds.EVENTS == ["s0", "s1", "s2"]
    assert names(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION"] * 3 + [
        "RUN_COMMAND",
        "SUSPENSION",
    ]
    assert list(out[-1][1].waiting_completions) == [1, 2, 3]


def test_a_step_always_runs_when_the_attempt_made_no_progress_yet() -> None:
    """Already past the margin at the start: the first step still runs (stopping before it
    would make no progress), then the attempt stops before the second."""
    recorder = Recorder()
    ctx = FakeLambdaContext(1_000, step_ms=100)
    _, out = lambda_call(
        endpoint(checkpointer=recorder), 5, ctx, {"x-restate-checkpoint-token": "t"}
    )
    assert ds.EVENTS == ["s0"] and len(recorder.batches) == 1
    assert names(out) == ["RUN_COMMAND", "SUSPENSION"]
    assert list(out[1][1].waiting_completions) == [1]
    _, out = lambda_call(endpoint(), 5, FakeLambdaContext(1_000))
    assert names(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION", "SUSPENSION"]


def test_no_deadline_policy_runs_until_the_end() -> None:
    """``deadline=None`` never stops early."""
    ctx = FakeLambdaContext(30_000, step_ms=9_000)
    app = restate.app(ds.SERVICES, deadline=None, eager_runs=True)
    assert app.endpoint.deadline is None
    _, out = lambda_call(app.endpoint, 5, ctx)
    assert ds.EVENTS == ["s0", "s1", "s2", "s3", "s4"]
    assert names(out)[-2:] == ["OUTPUT_COMMAND", "END"]


def test_no_lambda_context_no_deadline() -> None:
    """Outside Lambda (no context) nothing watches the time."""
    _, out = lambda_call(endpoint(eager_runs=True), 3, None)
    assert ds.EVENTS == ["s0", "s1", "s2"] and names(out)[-1] == "END"


# --------------------------------------------------------------------------- HTTP checkpoints


class _CheckpointServer:
    """A stdlib HTTP server standing in for the runtime's checkpoint endpoint."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoint"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _CheckpointServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_checkpoints_offered_by_the_lambda_envelope() -> None:
    """``x-restate-checkpoint-url`` + token: every step is POSTed (framed entries, invocation
    id, token, journal index) before the next runs; one invocation for the whole handler."""
    with _CheckpointServer([]) as server:
        offer = {"x-restate-checkpoint-url": server.url, "x-restate-checkpoint-token": "lease-9"}
        headers, out = lambda_call(endpoint(), 2, FakeLambdaContext(60_000), offer)
    assert names(out) == ["OUTPUT_COMMAND", "END"] and ds.EVENTS == ["s0", "s1"]
    assert headers["x-restate-journal-index"] == "5"
    assert [h["x-restate-journal-index"] for h, _ in server.requests] == ["1", "3"]
    for h, body in server.requests:
        assert h["x-restate-checkpoint-token"] == "lease-9"
        assert h["x-restate-invocation-id"] == str(INVOCATION_ID)
        assert h["content-type"] == V6
        assert [f.type for f in decode_all(body)] == [
            MessageType.RUN_COMMAND,
            MessageType.PROPOSE_RUN_COMPLETION,
        ]


def test_http_checkpoint_fenced_stops_the_attempt() -> None:
    """A 409 from the checkpoint endpoint: ErrorMessage 409, no further step."""
    with _CheckpointServer([409]) as server:
        offer = {"x-restate-checkpoint-url": server.url, "x-restate-checkpoint-token": "old"}
        _, out = lambda_call(endpoint(), 2, FakeLambdaContext(60_000), offer)
    assert names(out) == ["ERROR"] and out[0][1].code == 409
    assert ds.EVENTS == ["s0"] and len(server.requests) == 1


async def test_http_checkpointer_retries_5xx_then_gives_up() -> None:
    """Transport errors and 5xx are retried (same batch, so the runtime can deduplicate)."""
    batch = CheckpointBatch("inv_1", "tok", 1, b"", 6)
    with _CheckpointServer([503, 200]) as server:
        assert await HttpCheckpointer(server.url, backoff_s=0).checkpoint(batch) == b""
        assert len(server.requests) == 2
    with (
        _CheckpointServer([500, 502, 503]) as server,
        pytest.raises(CheckpointError, match="failed 3 times"),
    ):
        await HttpCheckpointer(server.url, backoff_s=0).checkpoint(batch)
    with _CheckpointServer([400]) as server:
        with pytest.raises(CheckpointError, match="HTTP 400"):
            await HttpCheckpointer(server.url, backoff_s=0).checkpoint(batch)
        assert len(server.requests) == 1
