"""Query results encoded as restate-server does (arrow-json's JSON, Arrow IPC streams)."""

from __future__ import annotations

import json

import pyarrow as pa

from invoker.introspection.encoding import to_ipc, to_json
from invoker.introspection.pushdown import Scan, keep


def test_json_rows_like_arrow_json() -> None:
    """Nulls left out; UTC timestamps RFC 3339 with 0/3/6/9 fraction digits and ``Z``;
    durations ISO 8601; binary hex; lists arrays; NaN null."""
    table = pa.table(
        {
            "ts": pa.array(
                [1_796_020_266_831, 1_796_020_266_000, None], pa.timestamp("ms", "+00:00")
            ),
            "naive": pa.array([1_500_000, 0, 1], pa.timestamp("us")),
            "dur": pa.array([86_400_000, 1_500, -250], pa.duration("ms")),
            "raw": pa.array([b"42", b"\x00\xff", None], pa.large_binary()),
            "list": pa.array([[1, 2], [], None], pa.list_(pa.uint32())),
            "f": pa.array([1.5, float("nan"), None]),
            "s": pa.array(["a", None, "c"], pa.large_string()),
        }
    )
    rows = json.loads(to_json(table))["rows"]
    assert rows[0] == {
        "ts": "2026-11-30T06:31:06.831Z",
        "naive": "1970-01-01T00:00:01.500",
        "dur": "PT86400S",
        "raw": "3432",
        "list": [1, 2],
        "f": 1.5,
        "s": "a",
    }
    assert rows[1] == {
        "ts": "2026-11-30T06:31:06Z",
        "naive": "1970-01-01T00:00:00",
        "dur": "PT1.500S",
        "raw": "00ff",
        "list": [],
    }
    assert rows[2] == {"naive": "1970-01-01T00:00:00.000001", "dur": "-PT0.250S", "s": "c"}


def test_json_of_no_columns_and_no_rows() -> None:
    assert json.loads(to_json(pa.table({"a": pa.array([], pa.int64())}))) == {"rows": []}


def test_ipc_stream_round_trip() -> None:
    """One schema message then the batches; an empty result still carries its schema."""
    table = pa.table({"count(Int64(1))": pa.array([3], pa.int64())})
    assert pa.ipc.open_stream(to_ipc(table)).read_all().equals(table)
    empty = table.schema.empty_table()
    back = pa.ipc.open_stream(to_ipc(empty)).read_all()
    assert back.num_rows == 0 and back.schema == table.schema


def test_keep_is_an_or_of_scans() -> None:
    """A row stays if any scan of its table can see it; a scan without filters sees all;
    values of other types than the column's are never used to drop rows."""
    rows = [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": None, "n": 3}]
    one = Scan("t", {"id": frozenset(["a"])})
    two = Scan("t", {"n": frozenset([2])})
    assert keep(rows, [one]) == rows[:1]
    assert keep(rows, [one, two]) == rows[:2]
    assert keep(rows, [one, Scan("t")]) == rows
    assert keep(rows, [Scan("t", {"n": frozenset(["2"])})]) == rows
