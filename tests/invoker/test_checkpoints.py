"""The checkpoint channel, runtime side, driven by a deployment speaking raw protocol messages:
what a checkpoint commits, what it refuses, and how an attempt that checkpointed is settled."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backends.memory import MemoryBackend
from invoker import records as rec
from invoker.api import InvokeRequest, Target
from invoker.engine import Engine
from invoker.journal import load_partition
from invoker.transport import Transports
from restate_lambda.checkpoint import CheckpointBatch, CheckpointFencedError
from restate_lambda.clock import ManualClock, SystemClock
from restate_lambda.protocol.framing import decode_all, encode
from restate_lambda.protocol.messages import pb
from tests.invoker.test_misbehaving_deployment import CT, MANIFEST

Script = Callable[[dict[str, Any], Any], Awaitable[tuple[bytes, dict[str, str]]]]


def _run_command(cid: int) -> Any:
    return pb().RunCommandMessage(name=f"step-{cid}", result_completion_id=cid)


def _run_result(cid: int, value: bytes) -> Any:
    return pb().ProposeRunCompletionMessage(result_completion_id=cid, value=value)


class CheckpointingDeployment:
    """An ASGI deployment whose attempts run ``script(start, channel)``: it may checkpoint
    through the offered channel, and returns (response body, extra headers)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.invokes = 0
        self.starts: list[Any] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"].endswith("/discover"):
            manifest = json.dumps(MANIFEST).encode()
            await _respond(
                send, 200, "application/vnd.restate.endpointmanifest.v2+json", manifest, {}
            )
            return
        self.invokes += 1
        frames = decode_all(body)
        start = pb().StartMessage()
        start.ParseFromString(frames[0].payload)
        self.starts.append(start)
        channel = scope.get("extensions", {}).get("restate.checkpoint")
        reply, headers = await self.script({"start": start, "frames": frames}, channel)
        await _respond(send, 200, CT, reply, headers)


async def _respond(send: Any, status: int, ct: str, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", ct.encode()), *((k.encode(), v.encode()) for k, v in headers.items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _engine(deployment: CheckpointingDeployment) -> Engine:
    engine = Engine(MemoryBackend(), ManualClock(SystemClock().now_ms()), Transports())
    await engine.start()
    engine.transports.asgi.mount("cp", deployment)
    await engine.register_deployment("asgi://cp")
    return engine


def _batch(start: Any, channel: Any, index: int, *messages: Any) -> CheckpointBatch:
    return CheckpointBatch(
        start.debug_id, channel["token"], index, b"".join(encode(m) for m in messages), 6
    )


def _output(value: bytes) -> bytes:
    out = pb().OutputCommandMessage()
    out.value.content = value
    return encode(out) + encode(pb().EndMessage())


async def test_a_suspension_on_a_checkpointed_run_resumes_at_once() -> None:
    """An attempt that checkpointed a run and then suspends on that run's completion (what a
    voluntary suspension before a Lambda deadline does) is invoked again at once."""

    async def script(attempt: dict[str, Any], channel: Any) -> tuple[bytes, dict[str, str]]:
        start = attempt["start"]
        if start.known_entries == 1:  # the first attempt: only the input is journaled
            await channel["checkpointer"].checkpoint(
                _batch(start, channel, 1, _run_command(1), _run_result(1, b'"one"'))
            )
            suspend = pb().SuspensionMessage(waiting_completions=[1])
            return encode(suspend), {"x-restate-journal-index": "3"}
        return _output(b'"done"'), {}

    deployment = CheckpointingDeployment(script)
    engine = await _engine(deployment)
    outcome = await engine.call(
        InvokeRequest(Target("Bad", "h"), b"1", [("content-type", "application/json")])
    )
    assert outcome.ok and outcome.value == b'"done"'
    assert deployment.invokes == 2
    assert deployment.starts[1].known_entries == 3  # input, run, its completion
    await engine.close()


async def test_a_checkpoint_is_refused_with_a_stale_token_or_journal_index() -> None:
    """Only the running attempt's token, at the journal index the journal has, is accepted."""
    refusals: list[str] = []

    async def script(attempt: dict[str, Any], channel: Any) -> tuple[bytes, dict[str, str]]:
        start = attempt["start"]
        checkpointer = channel["checkpointer"]
        forged = CheckpointBatch(start.debug_id, "not-the-token", 1, encode(_run_command(1)), 6)
        with pytest.raises(CheckpointFencedError):
            await checkpointer.checkpoint(forged)
        refusals.append("token")
        with pytest.raises(CheckpointFencedError):
            await checkpointer.checkpoint(_batch(start, channel, 5, _run_command(1)))
        refusals.append("index")
        return _output(b'"ok"'), {}

    deployment = CheckpointingDeployment(script)
    engine = await _engine(deployment)
    outcome = await engine.call(
        InvokeRequest(Target("Bad", "h"), b"1", [("content-type", "application/json")])
    )
    assert outcome.ok
    assert refusals == ["token", "index"]
    await engine.close()


async def test_a_retried_checkpoint_is_applied_once() -> None:
    """A checkpoint sent twice (its first answer lost) is journaled once; the second answer
    is the first's."""

    async def script(attempt: dict[str, Any], channel: Any) -> tuple[bytes, dict[str, str]]:
        start = attempt["start"]
        batch = _batch(start, channel, 1, _run_command(1), _run_result(1, b'"one"'))
        first = await channel["checkpointer"].checkpoint(batch)
        again = await channel["checkpointer"].checkpoint(batch)
        assert first == again
        return _output(b'"ok"'), {"x-restate-journal-index": "3"}

    deployment = CheckpointingDeployment(script)
    engine = await _engine(deployment)
    outcome = await engine.call(
        InvokeRequest(Target("Bad", "h"), b"1", [("content-type", "application/json")])
    )
    assert outcome.ok
    loaded = load_partition(await engine.backend.query(f"inv/{outcome.invocation_id}"))
    assert loaded is not None
    assert loaded.invocation.status == rec.Status.COMPLETED
    assert loaded.invocation.journal_len == 4  # input, run, its completion, output
    assert len(loaded.entries) == 4
    await engine.close()
