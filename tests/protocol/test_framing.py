"""Frame header layout, incremental decoding, truncation and size limits."""

from __future__ import annotations

import struct

import pytest

from restate_lambda.protocol import (
    REQUESTED_ACK,
    Frame,
    FrameDecoder,
    MessageType,
    ProtocolError,
    decode_all,
    decode_messages,
    encode,
    encode_raw,
    pb,
)
from restate_lambda.protocol.errors import PROTOCOL_VIOLATION


def test_header_layout_is_big_endian_type_flags_length() -> None:
    data = encode_raw(0x040D, b"abc", REQUESTED_ACK)
    assert data[:8] == bytes.fromhex("040d800000000003")
    (word,) = struct.unpack(">Q", data[:8])
    assert word >> 48 == 0x040D
    assert word & (1 << 47)  # REQUESTED_ACK is bit 47 of the u64
    assert word & 0xFFFFFFFF == 3
    assert data[8:] == b"abc"


def test_encode_message_with_and_without_ack() -> None:
    msg = pb().RunCommandMessage(result_completion_id=3, name="step")
    plain = encode(msg)
    acked = encode(msg, requested_ack=True)
    assert plain[8:] == acked[8:] == msg.SerializeToString()
    [f1] = decode_all(plain)
    [f2] = decode_all(acked)
    assert (f1.type, f1.requested_ack) == (MessageType.RUN_COMMAND, False)
    assert (f2.type, f2.requested_ack, f2.flags) == (MessageType.RUN_COMMAND, True, REQUESTED_ACK)
    assert f2.decode() == msg
    assert f2.to_bytes() == acked


def test_frame_keeps_raw_payload_bytes() -> None:
    # unknown field 99 survives because the frame keeps the payload bytes verbatim
    payload = pb().SleepCommandMessage(wake_up_time=5).SerializeToString() + b"\x98\x06\x01"
    [frame] = decode_all(encode_raw(MessageType.SLEEP_COMMAND, payload))
    assert frame.payload == payload
    assert pb().SleepCommandMessage.FromString(frame.payload).wake_up_time == 5


def test_empty_payload_frame() -> None:
    data = encode(pb().EndMessage())
    assert data == bytes.fromhex("0003000000000000")
    assert decode_all(data) == [Frame(MessageType.END, 0, b"")]


def test_incremental_decoder_byte_by_byte() -> None:
    P = pb()
    msgs = [
        P.StartMessage(id=b"\x01" * 24, debug_id="inv_x", known_entries=2, random_seed=7),
        P.InputCommandMessage(value=P.Value(content=b'"hi"')),
        P.EndMessage(),
        P.OutputCommandMessage(value=P.Value(content=b"x" * 1000)),
    ]
    data = b"".join(encode(m) for m in msgs)
    dec = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += dec.feed(data[i : i + 1])
    dec.finish()
    assert [f.decode() for f in frames] == msgs
    assert dec.buffered == 0


def test_decoder_arbitrary_chunks() -> None:
    data = b"".join(encode_raw(0x0400 + i, bytes([i]) * i) for i in range(20))
    for chunk in (3, 7, 8, 9, 64, len(data)):
        dec = FrameDecoder()
        out: list[Frame] = []
        for i in range(0, len(data), chunk):
            out += dec.feed(memoryview(data)[i : i + chunk])
        dec.finish()
        assert [(f.type, f.payload) for f in out] == [
            (0x0400 + i, bytes([i]) * i) for i in range(20)
        ]


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 12])
def test_truncated_trailing_frame_is_an_error(cut: int) -> None:
    data = encode(pb().EndMessage()) + encode_raw(0x0401, b"hello")
    truncated = data[: 8 + cut]
    dec = FrameDecoder()
    frames = dec.feed(truncated)
    assert len(frames) == 1
    with pytest.raises(ProtocolError) as ei:
        dec.finish()
    assert ei.value.code == PROTOCOL_VIOLATION
    with pytest.raises(ProtocolError, match="truncated"):
        decode_all(truncated)


def test_oversize_message_rejected_at_header() -> None:
    header_only = struct.pack(">HHI", 0x0401, 0, 1025)
    dec = FrameDecoder(max_message_size=1024)
    with pytest.raises(ProtocolError, match="over the limit"):
        dec.feed(header_only)  # rejected before the payload arrives
    assert decode_all(encode_raw(0x0401, b"x" * 1024), max_message_size=1024)


def test_default_limit_is_32_mib() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">HHI", 0x0401, 0, 32 * 1024 * 1024 + 1))


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ProtocolError):
        encode_raw(0x1_0000, b"")
    with pytest.raises(ProtocolError):
        encode_raw(1, b"", flags=0x1_0000)


def test_decode_messages_and_bad_payload() -> None:
    P = pb()
    data = encode(P.EndMessage()) + encode(P.CommandAckMessage(command_index=4))
    assert decode_messages(data) == [P.EndMessage(), P.CommandAckMessage(command_index=4)]
    with pytest.raises(ProtocolError, match="cannot decode"):
        decode_messages(encode_raw(MessageType.COMMAND_ACK, b"\xff\xff\xff"))
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode_messages(encode_raw(0x0123, b""))


def test_frame_is_immutable_and_hashable() -> None:
    f = Frame(1, 0, b"x")
    with pytest.raises(AttributeError):
        f.type = 2
    assert {f, Frame(1, 0, b"x")} == {f}
    assert f.message_type is MessageType.SUSPENSION
    assert Frame(0xFC01, 0, b"").message_type == 0xFC01
