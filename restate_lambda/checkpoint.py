"""The checkpoint channel: ``ctx.run`` results made durable in the middle of a request-response
invocation (AWS Lambda, HTTP/1.1), so that a handler of N steps runs in one invocation with
every step durable before the next one starts.

Without a channel, request-response mode suspends after every run (the runtime journals the
result from the response and invokes the handler again), as the official SDKs do. With one,
the SDK hands the entries written so far to a :class:`Checkpointer` after each run completion
and continues only once it returned.

Wire contract (proposed to runtimes; restate-server offers no channel and ignores all this):

1. Offer. The runtime offers a channel per attempt with two headers on the invocation request
   (HTTP request headers, or the ``headers`` of the Lambda envelope):

   - ``x-restate-checkpoint-token``: an opaque fencing token naming this attempt (its lease);
   - ``x-restate-checkpoint-url``: where to POST checkpoints (optional when the endpoint was
     given its own :class:`Checkpointer`, e.g. one writing to the store directly). It may
     instead be a Lambda function ARN (``arn:aws:lambda:...:function:NAME[:QUALIFIER]``): the
     checkpoint request is then a synchronous invocation of that function, its headers and
     body wrapped in a JSON event (see :mod:`restate_lambda.checkpoint_lambda`).

   In process, the ASGI scope may instead carry the extension ``restate.checkpoint``:
   ``{"checkpointer": <Checkpointer>, "token": "<token>"}``. No token, no channel.

2. Checkpoint request. ``POST <url>`` with headers ``content-type:
   application/vnd.restate.invocation.v<N>`` (the attempt's protocol version),
   ``x-restate-invocation-id``, ``x-restate-checkpoint-token`` and ``x-restate-journal-index``,
   and a body of framed protocol messages: every message the attempt wrote since its previous
   checkpoint, in order. They are all journal entries: commands (``RunCommand``, state
   commands, calls, sends, ...) and ``ProposeRunCompletion`` messages, which the runtime
   journals as ``RunCompletionNotification``. ``x-restate-journal-index`` is the journal index
   the first of them gets: ``StartMessage.known_entries`` plus every entry checkpointed so far
   (including the notifications returned in earlier replies).

3. Commit. The runtime appends the entries at that index in one conditional write: the
   invocation's current attempt must still hold the token, and the journal must hold exactly
   ``journal-index`` entries, apart from notifications that arrived during this attempt (it
   journals those first and returns them, see 4). It applies the entries' effects as it would
   at the end of an attempt (state writes, child calls and sends, timers). A retried request
   whose entries are already there under the same token is a success, answered the same way.
   Only then does it answer.

4. Reply. ``200`` with a body of framed notification messages (usually empty): every
   notification the runtime journaled for this invocation after the entries the attempt has
   seen and before this batch, in journal order. The SDK treats them as delivered before the
   batch's run completions, so await results stay the same on replay. ``409``: fenced off
   (another attempt owns the invocation, or the journal moved on): the SDK stops at once.
   Anything else is a failure; :class:`~restate_lambda.checkpoint_http.HttpCheckpointer`
   (and :class:`~restate_lambda.checkpoint_lambda.LambdaCheckpointer`) retries transport
   errors and 5xx a few times before giving up.

5. End of the attempt. The response carries only the messages written after the last
   checkpoint, plus the closing message (End, Suspension or Error), and the header
   ``x-restate-journal-index`` with the journal index of its first entry. Entries of one
   attempt (checkpoints and response) are journaled contiguously, except notifications
   returned in a checkpoint's reply. If a checkpoint failed or was fenced, the response is an
   ``ErrorMessage`` (code 409 fenced, 503 failed) and the run whose result did not become
   durable runs again in the next attempt; the handler never acted on it.

6. Suspension. A ``SuspensionMessage`` may name a completion that is already journaled (a
   voluntary suspension before a deadline waits for runs this attempt completed): the runtime
   must then invoke again at once. restate-server does the same (it resumes when any awaited
   notification is already stored).
"""

from __future__ import annotations

from typing import Protocol

#: Request header with the attempt's fencing token (offers a channel).
HEADER_TOKEN = "x-restate-checkpoint-token"
#: Request header with the URL to POST checkpoints to.
HEADER_URL = "x-restate-checkpoint-url"
#: Checkpoint request and invocation response header: journal index of the first entry sent.
HEADER_JOURNAL_INDEX = "x-restate-journal-index"
#: ASGI scope extension offering an in-process channel: ``{"checkpointer", "token"}``.
ASGI_EXTENSION = "restate.checkpoint"


class CheckpointBatch:
    """Entries an attempt asks the runtime to make durable before it continues.

    - ``invocation_id``: the printable id (``inv_1…``);
    - ``token``: the attempt's fencing token, as received in ``x-restate-checkpoint-token``;
    - ``journal_index``: the journal index of the first entry of ``entries``;
    - ``entries``: framed protocol messages (commands and ProposeRunCompletion), in order;
    - ``protocol_version``: the attempt's service protocol version (5 or 6).
    """

    __slots__ = ("entries", "invocation_id", "journal_index", "protocol_version", "token")

    def __init__(
        self,
        invocation_id: str,
        token: str,
        journal_index: int,
        entries: bytes,
        protocol_version: int,
    ) -> None:
        self.invocation_id = invocation_id
        self.token = token
        self.journal_index = journal_index
        self.entries = entries
        self.protocol_version = protocol_version

    def __repr__(self) -> str:
        return (
            f"CheckpointBatch({self.invocation_id!r}, token={self.token!r}, "
            f"journal_index={self.journal_index}, {len(self.entries)} bytes)"
        )


class Checkpointer(Protocol):
    """Makes checkpoint batches durable (see the module docstring for the contract)."""

    async def checkpoint(self, batch: CheckpointBatch) -> bytes | None:
        """Return once ``batch`` is durable, with the framed notifications the runtime journaled
        ahead of it (``b""`` or ``None`` when there are none). Raise
        :class:`CheckpointFencedError` when the attempt was fenced off, any other exception
        when the entries may not be durable."""
        ...


class CheckpointError(Exception):
    """A checkpoint did not become durable: the attempt stops (and is retried)."""

    code = 503


class CheckpointFencedError(CheckpointError):
    """The runtime refused a checkpoint: another attempt owns the invocation."""

    code = 409


class CheckpointChannel:
    """The channel offered to one attempt: a checkpointer and the attempt's token."""

    __slots__ = ("checkpointer", "token")

    def __init__(self, checkpointer: Checkpointer, token: str) -> None:
        self.checkpointer = checkpointer
        self.token = token


__all__ = [
    "ASGI_EXTENSION",
    "HEADER_JOURNAL_INDEX",
    "HEADER_TOKEN",
    "HEADER_URL",
    "CheckpointBatch",
    "CheckpointChannel",
    "CheckpointError",
    "CheckpointFencedError",
    "Checkpointer",
]
