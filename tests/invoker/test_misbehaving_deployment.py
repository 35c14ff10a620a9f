"""A deployment that breaks the protocol never corrupts the journal or stops the runtime."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from infra.testing import TestEnvironment
from invoker import keys
from invoker.journal import load_partition
from restate_lambda.protocol.framing import encode, encode_raw
from restate_lambda.protocol.messages import pb

CT = "application/vnd.restate.invocation.v6"
MANIFEST = {
    "protocolMode": "REQUEST_RESPONSE",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 6,
    "services": [
        {
            "name": "Bad",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "h",
                    "input": {"contentType": "application/json"},
                    "output": {"contentType": "application/json"},
                }
            ],
        },
        {
            "name": "Obj",
            "ty": "VIRTUAL_OBJECT",
            "handlers": [
                {
                    "name": "peek",
                    "ty": "SHARED",
                    "input": {},
                    "output": {"contentType": "application/json"},
                }
            ],
        },
    ],
}

Reply = tuple[int, str, bytes]


class ScriptedDeployment:
    """An ASGI deployment whose invoke answers come from a script, then a good answer."""

    def __init__(self, answers: list[Reply | Exception]) -> None:
        self.answers = answers
        self.invokes = 0

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"].endswith("/discover"):
            await _respond(
                send,
                200,
                "application/vnd.restate.endpointmanifest.v2+json",
                json.dumps(MANIFEST).encode(),
            )
            return
        self.invokes += 1
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            await _respond(send, *answer)
            return
        output = pb().OutputCommandMessage()
        output.value.content = b'"fine"'
        await _respond(send, 200, CT, encode(output) + encode(pb().EndMessage()))


async def _respond(
    send: Callable[[Any], Awaitable[None]], status: int, ct: str, body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ct.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _set_state() -> bytes:
    msg = pb().SetStateCommandMessage(key=b"k")
    msg.value.content = b"1"
    return encode(msg)


BAD_ANSWERS: dict[str, Reply | Exception] = {
    "http-500": (500, "text/plain", b"boom"),
    "http-404": (404, "text/plain", b"unknown handler"),
    "wrong-content-type": (200, "application/json", b"{}"),
    "garbage-frames": (200, CT, b"\x00\x01\x02"),
    "truncated-frame": (200, CT, encode_raw(0x0401, b"\x0a\x05hello")[:-2]),
    "undecodable-payload": (200, CT, encode_raw(0x0401, b"\xff\xff\xff")),
    "no-terminal-message": (200, CT, b""),
    "end-without-output": (200, CT, encode(pb().EndMessage())),
    "input-command": (200, CT, encode(pb().InputCommandMessage()) + encode(pb().EndMessage())),
    "app-raises": RuntimeError("deployment crashed"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
async def test_bad_answer_is_retried_then_succeeds(env: TestEnvironment, case: str) -> None:
    """Each protocol violation fails only the attempt: backoff, retry, then success."""
    deployment = ScriptedDeployment([BAD_ANSWERS[case]])
    await env.mount("bad", deployment)
    r = await env.ingress.post(
        "/Bad/h/send", content=b'"x"', headers={"content-type": "application/json"}
    )
    inv_id = r.json()["invocationId"]
    await env.settle()
    row = await env.engine.describe_invocation(inv_id)
    assert "backing-off" == row["status"]
    assert row["last_failure"]
    assert 1 == row["journal_size"]  # nothing of the bad attempt was stored
    await env.advance(timedelta(seconds=1))
    out = await env.ingress.get(f"/restate/invocation/{inv_id}/output")
    assert 200 == out.status_code
    assert "fine" == out.json()
    assert 2 == deployment.invokes
    greet = await env.ingress.post(
        "/Greeter/greet", content=b'"still"', headers={"content-type": "application/json"}
    )
    assert "Hello, still!" == greet.json()


async def test_shared_handler_writing_state_is_a_violation(env: TestEnvironment) -> None:
    """SetState from a shared handler fails the attempt and writes no state."""
    deployment = ScriptedDeployment([(200, CT, _set_state() + encode(pb().EndMessage()))])
    await env.mount("bad", deployment)
    r = await env.ingress.post("/Obj/k/peek/send")
    inv_id = r.json()["invocationId"]
    await env.settle()
    row = await env.engine.describe_invocation(inv_id)
    assert "backing-off" == row["status"]
    assert "may not write state" in row["last_failure"]
    assert {} == await env.engine.get_state("Obj", "k")


async def test_retries_pause_after_max_attempts(env: TestEnvironment) -> None:
    """A deployment that always fails is paused after the retry budget; resume runs it again."""
    deployment = ScriptedDeployment([(500, "text/plain", b"down")] * 1000)
    await env.mount("bad", deployment)
    r = await env.ingress.post(
        "/Bad/h/send", content=b'"x"', headers={"content-type": "application/json"}
    )
    inv_id = r.json()["invocationId"]
    await env.settle()
    for _ in range(80):
        await env.advance(timedelta(seconds=11))
    row = await env.engine.describe_invocation(inv_id)
    assert "paused" == row["status"]
    assert 70 == deployment.invokes
    deployment.answers.clear()
    assert 200 == (await env.admin.patch(f"/invocations/{inv_id}/resume")).status_code
    await env.settle()
    assert "fine" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()
    items = await env.backend.query(keys.inv(inv_id))
    loaded = load_partition(items)
    assert loaded is not None
    assert 2 == len(loaded.entries)  # input + output, nothing from the failed attempts
