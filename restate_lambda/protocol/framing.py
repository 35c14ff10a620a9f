"""Frames of the service protocol: an 8-byte big-endian header + a protobuf payload.

Header layout (one big-endian u64)::

    bits 63..48  message type (u16)
    bits 47..32  flags (u16); bit 47 (0x8000 in the flags word) = REQUESTED_ACK
    bits 31..0   payload length in bytes (u32)
"""

from __future__ import annotations

import struct

from restate_lambda.protocol.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from restate_lambda.protocol.messages import Message, MessageType

HEADER = struct.Struct(">HHI")
#: Size of a frame header in bytes.
HEADER_SIZE = HEADER.size
#: REQUESTED_ACK bit inside the 16-bit flags word (bit 47 of the u64 header).
REQUESTED_ACK = 0x8000
#: Default upper bound of a single message payload (Restate's default message size limit).
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024
_MAX_U32 = 0xFFFF_FFFF


class Frame:
    """One framed message; ``payload`` holds the exact raw protobuf bytes (immutable)."""

    __slots__ = ("flags", "payload", "type")

    type: int
    flags: int
    payload: bytes

    def __init__(self, type: int, flags: int, payload: bytes) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "payload", payload)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Frame is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.type, self.flags, self.payload) == (other.type, other.flags, other.payload)

    def __hash__(self) -> int:
        return hash((self.type, self.flags, self.payload))

    def __repr__(self) -> str:
        return f"Frame(type=0x{self.type:04X}, flags=0x{self.flags:04X}, payload={self.payload!r})"

    @property
    def requested_ack(self) -> bool:
        """Whether the sender asked for a CommandAck / ProposeRunCompletionAck."""
        return bool(self.flags & REQUESTED_ACK)

    @property
    def message_type(self) -> MessageType | int:
        """The type as a :class:`MessageType` when known, else the raw integer."""
        from restate_lambda.protocol.messages import MessageType, is_known

        return MessageType(self.type) if is_known(self.type) else self.type

    def decode(self) -> Message:
        """Parse the payload into its protobuf message (ProtocolError if impossible)."""
        from restate_lambda.protocol.messages import parse

        return parse(self.type, self.payload)

    def to_bytes(self) -> bytes:
        """Re-encode this frame (header + the same payload bytes)."""
        return encode_raw(self.type, self.payload, self.flags)

    def __len__(self) -> int:
        return HEADER_SIZE + len(self.payload)


def encode_header(t: int, length: int, flags: int = 0) -> bytes:
    """The 8 header bytes for a frame of type ``t`` with a ``length``-byte payload."""
    if not 0 <= t <= 0xFFFF:
        raise ProtocolError(f"message type {t} does not fit in 16 bits")
    if not 0 <= flags <= 0xFFFF:
        raise ProtocolError(f"flags {flags:#x} do not fit in 16 bits")
    if not 0 <= length <= _MAX_U32:
        raise ProtocolError(f"payload of {length} bytes does not fit in a frame")
    return HEADER.pack(t, flags, length)


def encode_raw(t: int, payload: bytes | bytearray | memoryview, flags: int = 0) -> bytes:
    """Frame already-serialized payload bytes."""
    return encode_header(t, len(payload), flags) + bytes(payload)


def encode(msg: Message, *, requested_ack: bool = False) -> bytes:
    """Serialize and frame a protobuf message; its type code is derived from its class."""
    from restate_lambda.protocol.messages import message_type_of

    t = message_type_of(msg)
    return encode_raw(t, msg.SerializeToString(), REQUESTED_ACK if requested_ack else 0)


def encode_many(msgs: list[Message]) -> bytes:
    """Frame several messages back to back (no ack flags)."""
    return b"".join(encode(m) for m in msgs)


class FrameDecoder:
    """Incremental frame decoder for a byte stream arriving in arbitrary chunks.

    ``feed`` returns every frame completed by the new bytes; ``finish`` must be
    called at end of stream and raises :class:`ProtocolError` if a partial frame
    is left over. Payloads larger than ``max_message_size`` are rejected as soon
    as their header is seen.
    """

    __slots__ = ("_buf", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_message_size = max_message_size

    @property
    def buffered(self) -> int:
        """Number of bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add bytes; return the frames completed so far (possibly none)."""
        self._buf += data
        buf = self._buf
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            t, flags, length = HEADER.unpack_from(buf, pos)
            if length > self.max_message_size:
                raise ProtocolError(
                    f"message of type 0x{t:04X} has {length} bytes, "
                    f"over the limit of {self.max_message_size}"
                )
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            frames.append(Frame(t, flags, bytes(buf[pos + HEADER_SIZE : stop])))
            pos = stop
        if pos:
            del buf[:pos]
        return frames

    def finish(self) -> None:
        """Declare end of stream; ProtocolError if a truncated frame remains."""
        if self._buf:
            n = len(self._buf)
            if n < HEADER_SIZE:
                raise ProtocolError(f"truncated frame header at end of stream ({n} bytes)")
            t, _, length = HEADER.unpack_from(self._buf, 0)
            raise ProtocolError(
                f"truncated message of type 0x{t:04X} at end of stream: "
                f"{n - HEADER_SIZE} of {length} payload bytes"
            )


def decode_all(
    data: bytes | bytearray | memoryview, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> list[Frame]:
    """Split a complete byte string into frames (ProtocolError on trailing garbage)."""
    decoder = FrameDecoder(max_message_size)
    frames = decoder.feed(data)
    decoder.finish()
    return frames


def decode_messages(
    data: bytes | bytearray | memoryview, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> list[Message]:
    """Split a complete byte string into frames and parse every payload."""
    return [f.decode() for f in decode_all(data, max_message_size)]
