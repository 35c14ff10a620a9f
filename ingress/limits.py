"""Bounds on what one ingress request may carry; each breach is a clear 4xx JSON error.

================================  =========  ======  =========================================
limit                             default    status  why
================================  =========  ======  =========================================
``max_body_bytes``                32 MiB     413     restate-server's ``message-size-limit``
``max_headers``                   100        431     hyper's (restate-server's) header count
``max_header_bytes``              64 KiB     431     all names and values together
``max_url_bytes``                 8 KiB      414     path and query string
``max_key_bytes``                 1 KiB      400     object/workflow keys and idempotency keys
                                                     (UTF-8); a key is part of storage keys,
                                                     and DynamoDB's partition key stops at 2 KiB
================================  =========  ======  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ingress.errors import IngressHttpError

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class IngressLimits:
    """The ingress's bounds (see the module docstring)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES

    def check_request(
        self, headers: list[tuple[bytes, bytes]], raw_path: bytes, query: bytes
    ) -> None:
        """Raise :class:`IngressHttpError` 431/414 when the request head is too large."""
        if len(headers) > self.max_headers:
            raise IngressHttpError(
                431, f"too many headers: {len(headers)}, the limit is {self.max_headers}"
            )
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            raise IngressHttpError(
                431, f"headers of {size} bytes exceed the limit of {self.max_header_bytes} bytes"
            )
        url = len(raw_path) + len(query)
        if url > self.max_url_bytes:
            raise IngressHttpError(
                414, f"URL of {url} bytes exceeds the limit of {self.max_url_bytes} bytes"
            )

    def check_key(self, what: str, key: str | None) -> None:
        """Raise :class:`IngressHttpError` 400 when ``key`` is longer than ``max_key_bytes``."""
        if key is None:
            return
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > self.max_key_bytes:
            raise IngressHttpError(
                400, f"{what} of {size} bytes exceeds the limit of {self.max_key_bytes} bytes"
            )
