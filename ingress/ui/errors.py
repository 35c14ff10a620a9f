"""The UI's refusals: an HTTP status and a message (answered as JSON ``{code, message}``)."""

from __future__ import annotations

from typing import Any

#: One row of a system table, by column name.
Row = dict[str, Any]


class UiError(Exception):
    """A request the UI refuses: an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
