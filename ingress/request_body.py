"""Reading request bodies under a size limit (413 beyond it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ingress.errors import IngressHttpError
from ingress.limits import DEFAULT_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES

TOO_LARGE_MESSAGE = "length limit exceeded"
#: What restate-server answers when a chunked body grows past the limit.
STREAM_TOO_LARGE_MESSAGE = "cannot read body: LengthLimitError"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; :class:`IngressHttpError` 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IngressHttpError(413, TOO_LARGE_MESSAGE)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise IngressHttpError(413, STREAM_TOO_LARGE_MESSAGE)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object, or a 400 naming ``what``."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngressHttpError(400, f"cannot read body: invalid {what} body: {exc}") from exc
    except RecursionError as exc:
        raise IngressHttpError(
            400, f"cannot read body: invalid {what} body: JSON nested too deeply"
        ) from exc
    if not isinstance(value, dict):
        raise IngressHttpError(400, f"cannot read body: invalid {what} body: expected an object")
    return value
