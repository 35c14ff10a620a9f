"""A :class:`~restate_lambda.checkpoint.Checkpointer` that POSTs checkpoints to the runtime's
checkpoint URL (``x-restate-checkpoint-url``), following the contract in
:mod:`restate_lambda.checkpoint`.

Uses the standard library (``urllib`` in a worker thread, imported on first use) so that a
handler Lambda needs no HTTP client package.
"""

from __future__ import annotations

from typing import Any

from restate_lambda.checkpoint import HEADER_JOURNAL_INDEX, HEADER_TOKEN, CheckpointBatch
from restate_lambda.checkpoint_client import (
    TransientCheckpointError,
    reply_body,
    send_with_retries,
)


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
        return await send_with_retries(
            lambda: self._post(batch),
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            target=self.url,
        )

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
            return reply_body(e.code, _read(e))
        except (urllib.error.URLError, OSError) as e:
            raise TransientCheckpointError(str(e)) from e
        return reply_body(status, body)


def _read(e: Any) -> bytes:
    try:
        return bytes(e.read())
    except Exception:
        return b""
