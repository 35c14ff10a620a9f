"""Building ingress responses from engine results."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import JSONResponse, Response

from ingress.errors import error_response, http_status_for_code
from invoker.api import Outcome, SendResult


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_execution_time(ms: int) -> str:
    """Epoch ms as restate-server writes ``executionTime`` (``…T13:24:21.123000000Z``)."""
    stamp = _utc(ms)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


def format_idempotency_expires(ms: int) -> str:
    """Epoch ms as restate-server writes ``idempotency-expires`` (``…T13:24:16.995+00:00``)."""
    stamp = _utc(ms)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+00:00"


def outcome_response(outcome: Outcome) -> Response:
    """200 with the handler's output, or the terminal failure as a JSON error."""
    if not outcome.ok:
        response: Response = error_response(
            http_status_for_code(outcome.failure_code),
            outcome.failure_message,
            source="invocation",
            code=outcome.failure_code,
            invocation_id=outcome.invocation_id,
            metadata=outcome.failure_metadata or None,
        )
    else:
        response = Response(
            content=outcome.value,
            status_code=200,
            media_type=outcome.content_type if outcome.value or outcome.content_type else None,
        )
        response.headers["x-restate-id"] = outcome.invocation_id
    if outcome.idempotency_expires_ms is not None:
        response.headers["idempotency-expires"] = format_idempotency_expires(
            outcome.idempotency_expires_ms
        )
    return response


def send_response(result: SendResult) -> Response:
    """202 ``{"invocationId","status"[,"executionTime"]}``."""
    body: dict[str, str] = {"invocationId": result.invocation_id}
    if result.execution_time_ms is not None:
        body["executionTime"] = format_execution_time(result.execution_time_ms)
    body["status"] = "PreviouslyAccepted" if result.previously_accepted else "Accepted"
    return JSONResponse(body, status_code=202, headers={"x-restate-id": result.invocation_id})
