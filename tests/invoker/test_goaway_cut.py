"""``invoker.goaway_cut``: GOAWAY frames leave the byte stream wherever reads split it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from invoker.goaway_cut import Goaway, GoawayCut


def _frame(ftype: int, payload: bytes, stream_id: int = 1) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([ftype, 0]) + stream_id.to_bytes(4, "big") + payload
    )


def _goaway(last: int, code: int) -> bytes:
    return _frame(0x7, last.to_bytes(4, "big") + code.to_bytes(4, "big") + b"debug", 0)


frames = st.lists(
    st.one_of(
        st.builds(
            lambda p, t: (_frame(t, p), None),
            st.binary(max_size=40),
            st.sampled_from([0, 1, 3, 4, 8]),
        ),
        st.builds(
            lambda last, code: (_goaway(last, code), Goaway(last, code)),
            st.integers(0, 2**31 - 1),
            st.integers(0, 13),
        ),
    ),
    max_size=12,
)


@given(frames, st.lists(st.integers(1, 50), max_size=30))
def test_goaways_leave_the_stream_however_the_reads_split_it(
    parts: list[tuple[bytes, Goaway | None]], cuts: list[int]
) -> None:
    stream = b"".join(frame for frame, _g in parts)
    cutter = GoawayCut()
    passed, seen = b"", []
    pos = 0
    for size in [*cuts, len(stream)]:
        out, goaways = cutter.feed(stream[pos : pos + size])
        passed += out
        seen += goaways
        pos += size
        if pos >= len(stream):
            break
    assert passed == b"".join(frame for frame, g in parts if g is None)
    assert seen == [g for _frame, g in parts if g is not None]


def test_a_read_without_goaway_passes_as_it_came() -> None:
    data = _frame(0, b"hello") + _frame(1, b"\x88")
    out, goaways = GoawayCut().feed(data)
    assert out is data and goaways == []
