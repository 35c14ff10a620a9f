"""Query results as restate-server sends them: Arrow IPC stream, or JSON ``{"rows": [...]}``.

The JSON form is arrow-json's (what restate-server uses): null columns are left out of a row,
timestamps are RFC 3339 in UTC (``2026-11-30T06:22:02.481Z``), durations ISO 8601
(``PT86400S``), binary values hex, lists arrays.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ARROW_STREAM = "application/vnd.apache.arrow.stream"

_UNIT_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def to_ipc(table: pa.Table) -> bytes:
    """An Arrow IPC stream (schema, then one message per batch)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _fraction(rest: int, per_s: int) -> str:
    """Sub-second digits as chrono's AutoSi does: none, 3, 6 or 9 digits."""
    if rest == 0:
        return ""
    nanos = rest * (1_000_000_000 // per_s)
    for digits, scale in ((3, 1_000_000), (6, 1_000)):
        if nanos % scale == 0:
            return "." + str(nanos // scale).zfill(digits)
    return "." + str(nanos).zfill(9)


def _timestamp(value: int, unit: str, utc: bool) -> str:
    per_s = _UNIT_PER_S[unit]
    seconds, rest = divmod(value, per_s)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + _fraction(rest, per_s) + ("Z" if utc else "")


def _duration(value: int, unit: str) -> str:
    per_s = _UNIT_PER_S[unit]
    sign = "-" if value < 0 else ""
    seconds, rest = divmod(abs(value), per_s)
    return f"{sign}PT{seconds}{_fraction(rest, per_s)}S"


def _column(array: pa.ChunkedArray | pa.Array, ty: pa.DataType) -> list[Any]:
    """A column as JSON-ready Python values (None for nulls)."""
    if pa.types.is_timestamp(ty):
        ints = pc.cast(array, pa.int64()).to_pylist()
        utc = ty.tz is not None
        return [None if v is None else _timestamp(v, ty.unit, utc) for v in ints]
    if pa.types.is_duration(ty):
        ints = pc.cast(array, pa.int64()).to_pylist()
        return [None if v is None else _duration(v, ty.unit) for v in ints]
    if pa.types.is_binary(ty) or pa.types.is_large_binary(ty) or pa.types.is_fixed_size_binary(ty):
        return [None if v is None else v.hex() for v in array.to_pylist()]
    if pa.types.is_binary_view(ty):
        return [None if v is None else v.hex() for v in array.to_pylist()]
    if pa.types.is_date(ty) or pa.types.is_time(ty):
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    if pa.types.is_decimal(ty):
        return [None if v is None else str(v) for v in array.to_pylist()]
    if pa.types.is_floating(ty):
        return [None if v is None or v != v else v for v in array.to_pylist()]
    return list(array.to_pylist())


def to_json(table: pa.Table) -> bytes:
    """``{"rows": [...]}`` with one object per row; null columns left out."""
    names = table.column_names
    columns = [_column(table.column(i), table.schema.field(i).type) for i in range(len(names))]
    rows = []
    for values in zip(*columns, strict=True) if columns else ():
        rows.append({n: v for n, v in zip(names, values, strict=True) if v is not None})
    if not columns:
        rows = [{} for _ in range(table.num_rows)]
    return json.dumps({"rows": rows}, separators=(",", ":"), default=str).encode()
