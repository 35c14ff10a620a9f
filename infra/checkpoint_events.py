"""Checkpoints arriving as Lambda invocations: the runtime side of
:class:`restate_lambda.checkpoint_lambda.LambdaCheckpointer`.

On AWS the checkpoint URL offered to handler functions is a Lambda function ARN (the runtime
function that runs the attempt, or the one ``RESTATE_LAMBDA_CHECKPOINT_URL`` names). The handler
invokes it synchronously with::

    {"restate_lambda_checkpoint": {"headers": {...}, "body": "<base64 framed messages>"}}

and gets ``{"status": ..., "body": "<base64>"}`` back: 200 with the framed notifications, 409
when the attempt was fenced off, 400 for a malformed event or batch, 503 when the store kept
failing (the SDK retries; a batch already applied is answered from the journal). The commit is
the engine's :meth:`~invoker.engine.Engine.checkpoint`, the same as the ingress route
``POST /restate-lambda/checkpoint``. An invalid event is answered, never raised.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from invoker.api import EngineError
from invoker.engine import Engine
from restate_lambda.checkpoint import HEADER_JOURNAL_INDEX, HEADER_TOKEN
from restate_lambda.checkpoint_lambda import EVENT_KEY

log = logging.getLogger("restate_lambda.checkpoints")


class InvalidCheckpointEvent(ValueError):
    """The event is not a well-formed checkpoint event (answered with 400)."""


def is_checkpoint_event(event: Any) -> bool:
    """Whether a Lambda event is a checkpoint (has the ``restate_lambda_checkpoint`` key)."""
    return isinstance(event, dict) and EVENT_KEY in event


def parse(event: Any) -> tuple[str, str, int, bytes]:
    """``(invocation_id, token, journal_index, frames)`` of a checkpoint event.

    Raises:
        InvalidCheckpointEvent: a missing or malformed part, named.
    """
    inner = event.get(EVENT_KEY) if isinstance(event, dict) else None
    if not isinstance(inner, dict):
        raise InvalidCheckpointEvent(f"a checkpoint event is {{{EVENT_KEY!r}: {{headers, body}}}}")
    raw_headers = inner.get("headers")
    if not isinstance(raw_headers, dict):
        raise InvalidCheckpointEvent("the checkpoint event has no 'headers' object")
    headers = {str(k).lower(): v for k, v in raw_headers.items() if isinstance(v, str)}
    invocation_id = headers.get("x-restate-invocation-id")
    token = headers.get(HEADER_TOKEN)
    index = headers.get(HEADER_JOURNAL_INDEX, "")
    if not invocation_id or not token or not index.isdigit() or len(index) > 12:
        raise InvalidCheckpointEvent(
            f"a checkpoint needs the headers x-restate-invocation-id, {HEADER_TOKEN} and "
            f"{HEADER_JOURNAL_INDEX} (a number)"
        )
    body = inner.get("body", "")
    if not isinstance(body, str):
        raise InvalidCheckpointEvent("the checkpoint event's 'body' is not a base64 string")
    try:
        frames = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCheckpointEvent(f"the checkpoint event's 'body' is not base64: {exc}") from exc
    return invocation_id, token, int(index), frames


def answer(status: int, body: bytes | str = b"") -> dict[str, Any]:
    """The reply to a checkpoint event."""
    data = body.encode() if isinstance(body, str) else body
    return {"status": status, "body": base64.b64encode(data).decode("ascii")}


async def handle_checkpoint_event(engine: Engine, event: Any) -> dict[str, Any]:
    """Commit the checkpoint ``event`` carries; its reply (never raises for a bad event or a
    refused or failed commit)."""
    try:
        invocation_id, token, journal_index, frames = parse(event)
    except InvalidCheckpointEvent as exc:
        return answer(400, str(exc))
    try:
        reply = await engine.checkpoint(invocation_id, token, journal_index, frames)
    except EngineError as exc:  # 409 fenced off, 400 malformed batch
        return answer(exc.status, exc.message)
    except Exception as exc:  # storage kept failing: worth another try
        log.warning("checkpoint of %s failed: %r", invocation_id, exc)
        return answer(503, f"checkpoint failed: {exc!r}")
    return answer(200, reply)
