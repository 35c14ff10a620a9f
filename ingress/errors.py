"""JSON error responses in the shape restate-server's ingress uses."""

from __future__ import annotations

import logging
from typing import Literal

from starlette.responses import JSONResponse

log = logging.getLogger("restate_lambda.ingress")

ErrorSource = Literal["ingress", "invocation"]


class IngressHttpError(Exception):
    """An error the ingress answers directly: HTTP status, message and source."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        source: ErrorSource = "ingress",
        invocation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.source: ErrorSource = source
        self.invocation_id = invocation_id


def error_response(
    status: int,
    message: str,
    *,
    source: ErrorSource = "ingress",
    code: int | None = None,
    invocation_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"code","message","source"[,"metadata"]}`` with ``x-restate-error-source`` (+ id)."""
    body: dict[str, object] = {
        "code": status if code is None else code,
        "message": message,
        "source": source,
    }
    if metadata:
        body["metadata"] = metadata
    headers: dict[str, str] = {"x-restate-error-source": source}
    if invocation_id is not None:
        headers["x-restate-id"] = invocation_id
    log.info("ingress error %d (%s): %s", status, source, message)
    return JSONResponse(body, status_code=status, headers=headers)


def http_status_for_code(code: int) -> int:
    """The HTTP status for a terminal failure code: the code itself when it is a usable status."""
    return code if 200 <= code <= 999 else 500
