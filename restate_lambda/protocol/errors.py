"""Errors raised by the protocol codec."""

from __future__ import annotations

#: The SDK could not replay the journal: the handler code diverged from the recorded commands.
JOURNAL_MISMATCH = 570
#: A peer sent a message that is malformed or not allowed in the current state.
PROTOCOL_VIOLATION = 571


class ProtocolError(Exception):
    """A violation of the Restate service protocol (bad frame, bad message, bad sequence).

    ``code`` is the error code to report in an ``ErrorMessage`` (571 by default,
    570 for journal mismatches).
    """

    def __init__(self, message: str, code: int = PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r}, code={self.code})"
