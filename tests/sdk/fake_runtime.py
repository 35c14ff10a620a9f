"""A minimal in-process runtime for SDK tests: it keeps one invocation's journal, drives the ASGI
app in request-response mode, commits each attempt's output, resumes suspensions, can kill an
attempt (as an attempt timeout or a Lambda deadline would) and can offer the in-process
checkpoint channel (the ``restate.checkpoint`` ASGI extension) with a fencing token per attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from restate_lambda.checkpoint import (
    ASGI_EXTENSION,
    HEADER_JOURNAL_INDEX,
    CheckpointBatch,
    CheckpointFencedError,
)
from restate_lambda.protocol import encode, encode_raw
from restate_lambda.protocol.framing import decode_all
from restate_lambda.protocol.ids import InvocationId
from restate_lambda.protocol.messages import MessageType, is_command, parse, pb

T = MessageType
INVOCATION_ID = InvocationId(4321, 8765)


def input_entry(body: bytes) -> bytes:
    """A framed InputCommand."""
    msg = pb().InputCommandMessage()
    msg.value.content = body
    return encode(msg)


def journal_entry(t: int, payload: bytes) -> bytes:
    """The journal entry for an attempt's message: commands as they are, a proposed run
    completion as the RunCompletionNotification the runtime journals."""
    if t != T.PROPOSE_RUN_COMPLETION:
        return encode_raw(t, payload)
    proposal: Any = parse(t, payload)
    notif = pb().NotificationTemplate(completion_id=proposal.result_completion_id)
    if proposal.WhichOneof("result") == "failure":
        notif.failure.CopyFrom(proposal.failure)
    else:
        notif.value.content = proposal.value
    return encode_raw(T.RUN_COMPLETION_NOTIFICATION, notif.SerializeToString())


class Outcome:
    """What one attempt answered."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.frames = [(f.type, f.payload) for f in decode_all(body)] if status == 200 else []

    @property
    def types(self) -> list[str]:
        """Message type names of the answer."""
        return [MessageType(t).name for t, _ in self.frames]

    def last(self) -> Any:
        """The parsed closing message."""
        t, payload = self.frames[-1]
        return parse(t, payload)

    def last_output(self) -> bytes:
        """The value of the OutputCommand."""
        for t, payload in self.frames:
            if t == T.OUTPUT_COMMAND:
                return bytes(parse(t, payload).value.content)  # type: ignore[attr-defined]
        raise AssertionError(f"no output in {self.types}")


class FakeRuntime:
    """One invocation of ``service/handler`` with ``body`` as input, driven against ``app``."""

    def __init__(
        self,
        app: Any,
        service: str,
        handler: str,
        body: bytes,
        *,
        checkpoints: bool = False,
        version: int = 6,
    ) -> None:
        self.app = app
        self.path = f"/invoke/{service}/{handler}"
        self.version = version
        self.checkpoints = checkpoints
        self.journal: list[bytes] = [input_entry(body)]
        self.attempts = 0
        self.checkpoint_calls: list[CheckpointBatch] = []
        #: Framed notifications the next checkpoint journals ahead of its batch and returns.
        self.foreign: list[bytes] = []
        #: Awaited by every checkpoint before it commits (tests block checkpoints with it).
        self.gate: Callable[[CheckpointBatch], Awaitable[None]] | None = None
        self.outcomes: list[Outcome] = []
        self._token = ""

    # -- the checkpoint channel ---------------------------------------------------------------

    async def checkpoint(self, batch: CheckpointBatch) -> bytes:
        """Commit ``batch`` if its attempt still holds the lease and the journal is where the
        attempt thinks it is; return the foreign notifications journaled ahead of it."""
        self.checkpoint_calls.append(batch)
        if self.gate is not None:
            await self.gate(batch)
        if batch.token != self._token or batch.journal_index != len(self.journal):
            raise CheckpointFencedError(f"stale attempt {batch.token}@{batch.journal_index}")
        foreign, self.foreign = self.foreign, []
        self.journal.extend(foreign)
        self._append([(f.type, f.payload) for f in decode_all(batch.entries)])
        return b"".join(foreign)

    # -- attempts -------------------------------------------------------------------------------

    def _append(self, frames: list[tuple[int, bytes]]) -> None:
        for t, payload in frames:
            if is_command(t) or t == T.PROPOSE_RUN_COMPLETION:
                self.journal.append(journal_entry(t, payload))

    def _request(self) -> bytes:
        start = pb().StartMessage(
            id=INVOCATION_ID.to_bytes(),
            debug_id=str(INVOCATION_ID),
            known_entries=len(self.journal),
            random_seed=7,
        )
        return encode(start) + b"".join(self.journal)

    async def attempt(self, kill: asyncio.Event | None = None) -> Outcome | None:
        """Run one attempt; commit its answer. ``None`` if ``kill`` fired first (the attempt
        was killed: its answer is lost, only what it checkpointed stays)."""
        self.attempts += 1
        self._token = f"lease-{self.attempts}"
        extensions: dict[str, Any] = {}
        if self.checkpoints:
            extensions[ASGI_EXTENSION] = {"checkpointer": self, "token": self._token}
        call = asyncio.ensure_future(
            asgi_exchange(self.app, self.path, self._request(), self.version, extensions)
        )
        if kill is not None:
            killed = asyncio.ensure_future(kill.wait())
            await asyncio.wait({call, killed}, return_when=asyncio.FIRST_COMPLETED)
            killed.cancel()
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
                kill.clear()
                self._token = ""
                return None
        status, headers, body = await call
        outcome = Outcome(status, headers, body)
        self.outcomes.append(outcome)
        if self.checkpoints and HEADER_JOURNAL_INDEX in headers:
            assert int(headers[HEADER_JOURNAL_INDEX]) == len(self.journal)
        self._append(outcome.frames)
        self._token = ""
        return outcome

    def _resumable(self, suspension: Any) -> bool:
        done = set()
        for entry in self.journal:
            (frame,) = decode_all(entry)
            if not is_command(frame.type):
                done.add(pb().NotificationTemplate.FromString(frame.payload).completion_id)
        return any(c in done for c in suspension.waiting_completions)

    async def run(self, kill: asyncio.Event | None = None, max_attempts: int = 20) -> Outcome:
        """Attempt until the invocation ends (Output + End): suspensions resume when an awaited
        completion is journaled, killed and failed attempts are retried."""
        for _ in range(max_attempts):
            outcome = await self.attempt(kill)
            if outcome is None or outcome.types[-1] == "ERROR":
                continue
            if outcome.types[-1] == "END":
                return outcome
            assert outcome.types[-1] == "SUSPENSION", outcome.types
            assert self._resumable(outcome.last()), "suspended on nothing that can complete"
        raise AssertionError(f"not done after {max_attempts} attempts")


async def asgi_exchange(
    app: Any,
    path: str,
    body: bytes,
    version: int,
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Drive the ASGI app with one HTTP/1.1 request: (status, headers, body)."""
    raw = {"content-type": f"application/vnd.restate.invocation.v{version}", **(headers or {})}
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in raw.items()],
        "extensions": extensions or {},
    }
    sent = False
    status = 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update({k.decode(): v.decode() for k, v in message["headers"]})
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)
