"""Takes GOAWAY frames out of the bytes an HTTP/2 server sends, so that a graceful shutdown
can be honoured.

A server that closes a connection gracefully (hypercorn after ``keep_alive_max_requests``
requests, a deployment being redeployed) sends GOAWAY with the last stream id it will
process, then finishes those streams and closes. RFC 9113 (6.8) has the client go on reading
them; the ``h2`` state machine (and ``jh2``'s) closes the whole connection at a GOAWAY and
raises on any frame after it, in the same read too, which loses the events of that read.
So :class:`invoker.http2_client` hands h2 the byte stream without its GOAWAY frames and acts
on them itself: no new stream on that connection, the streams above the last id opened again
elsewhere, the others read to their end.

This walks frame headers only (9 bytes: 24-bit length, type, flags, stream id); payloads
pass through untouched, and a read without a GOAWAY is returned as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_HEADER: Final = 9
_GOAWAY: Final = 0x7


@dataclass(frozen=True, slots=True)
class Goaway:
    """A GOAWAY frame's payload: the last stream id the server processes, and its error code
    (0, ``NO_ERROR``: a graceful shutdown)."""

    last_stream_id: int
    error_code: int


class GoawayCut:
    """Follows the frames of one connection's incoming byte stream across reads."""

    __slots__ = ("_cut", "_head", "_left")

    def __init__(self) -> None:
        #: Header bytes of the next frame received so far (a header split across reads).
        self._head = b""
        #: Payload bytes of the current frame still to come.
        self._left = 0
        #: The payload of the GOAWAY being read, or None (the current frame passes through).
        self._cut: bytearray | None = None

    def feed(self, data: bytes) -> tuple[bytes, list[Goaway]]:
        """The bytes to hand to h2 (``data`` without GOAWAY frames; a frame header split across
        reads is held back until it is whole) and the GOAWAY frames that ended in ``data``."""
        goaways: list[Goaway] = []
        out: bytearray | None = None  # None: so far, everything passes through as it came
        pos, n = 0, len(data)
        if self._head:  # the held-back header bytes come first
            out = bytearray()
        while pos < n:
            if self._left:
                take = min(self._left, n - pos)
                if self._cut is not None:
                    if out is None:
                        out = bytearray(data[:pos])
                    self._cut += data[pos : pos + take]
                elif out is not None:
                    out += data[pos : pos + take]
                pos += take
                self._left -= take
                if not self._left and self._cut is not None:
                    goaways.append(_parse(self._cut))
                    self._cut = None
                continue
            need = _HEADER - len(self._head)
            head = self._head + data[pos : pos + need]
            start = pos
            pos += len(head) - len(self._head)
            if len(head) < _HEADER:  # the rest of this header comes with the next read
                if out is None:
                    out = bytearray(data[:start])
                self._head = head
                break
            self._head = b""
            length = int.from_bytes(head[:3], "big")
            if head[3] == _GOAWAY:
                if out is None:
                    out = bytearray(data[:start])
                self._cut = bytearray()
                if length == 0:
                    goaways.append(_parse(self._cut))
                    self._cut = None
            elif out is not None:
                out += head
            self._left = length
        return (data if out is None else bytes(out)), goaways


def _parse(payload: bytes | bytearray) -> Goaway:
    if len(payload) < 8:  # malformed: treat it as an error that covers nothing
        return Goaway(last_stream_id=0, error_code=1)
    return Goaway(
        last_stream_id=int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
        error_code=int.from_bytes(payload[4:8], "big"),
    )
