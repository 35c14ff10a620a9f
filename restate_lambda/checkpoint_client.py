"""What the SDK's checkpoint clients share: the reply mapping of the contract in
:mod:`restate_lambda.checkpoint` (200 durable, 409 fenced, 5xx and transport errors worth
another try, anything else a failure) and the retry loop around a blocking send.

Used by :class:`~restate_lambda.checkpoint_http.HttpCheckpointer` and
:class:`~restate_lambda.checkpoint_lambda.LambdaCheckpointer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from restate_lambda.checkpoint import CheckpointError, CheckpointFencedError


class TransientCheckpointError(Exception):
    """A failure worth another try (transport error, 5xx)."""


def raise_for_status(status: int, body: bytes) -> NoReturn:
    """Raise what a non-2xx checkpoint reply means: :class:`CheckpointFencedError` (409),
    :class:`TransientCheckpointError` (5xx) or :class:`CheckpointError`."""
    text = body[:200].decode("utf-8", "replace")
    if status == 409:
        raise CheckpointFencedError(f"checkpoint fenced off: {text}")
    if status >= 500:
        raise TransientCheckpointError(f"HTTP {status}: {text}")
    raise CheckpointError(f"checkpoint rejected with HTTP {status}: {text}")


def reply_body(status: int, body: bytes) -> bytes:
    """``body`` of a 2xx reply (the framed notifications); otherwise :func:`raise_for_status`."""
    if not 200 <= status < 300:
        raise_for_status(status, body)
    return body


async def send_with_retries(
    send: Callable[[], bytes], *, attempts: int, backoff_s: float, target: str
) -> bytes:
    """Call the blocking ``send`` in a worker thread until it returns, up to ``attempts`` times
    in all while it raises :class:`TransientCheckpointError` (exponential backoff from
    ``backoff_s``); then :class:`CheckpointError` naming ``target``."""
    loop = asyncio.get_running_loop()
    last: Exception | None = None
    for i in range(attempts):
        if i:
            await asyncio.sleep(backoff_s * 2 ** (i - 1))
        try:
            return await loop.run_in_executor(None, send)
        except TransientCheckpointError as e:
            last = e
    raise CheckpointError(f"checkpoint to {target} failed {attempts} times: {last}")
