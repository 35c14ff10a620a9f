"""A :class:`~restate_lambda.checkpoint.Checkpointer` that POSTs checkpoints to the runtime's
checkpoint URL (``x-restate-checkpoint-url``), following the contract in
:mod:`restate_lambda.checkpoint`.

Uses the standard library (``urllib`` in a worker thread, imported on first use) so that a
handler Lambda needs no HTTP client package.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from restate_lambda.checkpoint import (
    HEADER_JOURNAL_INDEX,
    HEADER_TOKEN,
    CheckpointBatch,
    CheckpointError,
    CheckpointFencedError,
)


class _Transient(Exception):
    """A failure worth another try (transport error, 5xx)."""


class HttpCheckpointer:
    """POST each batch to ``url``; retry transport errors and 5xx ``attempts`` times in all."""

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 3,
        backoff_s: float = 0.1,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    async def checkpoint(self, batch: CheckpointBatch) -> bytes:
        """POST ``batch``; the reply body (framed notifications) once it is durable."""
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        for i in range(self.attempts):
            if i:
                await asyncio.sleep(self.backoff_s * 2 ** (i - 1))
            try:
                return await loop.run_in_executor(None, self._post, batch)
            except _Transient as e:
                last = e
        raise CheckpointError(f"checkpoint to {self.url} failed {self.attempts} times: {last}")

    def _post(self, batch: CheckpointBatch) -> bytes:
        import urllib.error
        import urllib.request

        headers = {
            **self.headers,
            "content-type": f"application/vnd.restate.invocation.v{batch.protocol_version}",
            "x-restate-invocation-id": batch.invocation_id,
            HEADER_TOKEN: batch.token,
            HEADER_JOURNAL_INDEX: str(batch.journal_index),
        }
        request = urllib.request.Request(self.url, data=batch.entries, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body: bytes = response.read()
                status = int(response.status)
        except urllib.error.HTTPError as e:
            _raise_for(e.code, _read(e))
        except (urllib.error.URLError, OSError) as e:
            raise _Transient(str(e)) from e
        if not 200 <= status < 300:
            _raise_for(status, body)
        return body


def _read(e: Any) -> bytes:
    try:
        return bytes(e.read())
    except Exception:
        return b""


def _raise_for(status: int, body: bytes) -> NoReturn:
    text = body[:200].decode("utf-8", "replace")
    if status == 409:
        raise CheckpointFencedError(f"checkpoint fenced off: {text}")
    if status >= 500:
        raise _Transient(f"HTTP {status}: {text}")
    raise CheckpointError(f"checkpoint rejected with HTTP {status}: {text}")
