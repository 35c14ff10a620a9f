"""``benchmarks/step_bench.py`` runs, and a durable step costs one conditional write (two puts)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "step_bench.py"


@functools.cache
def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("step_bench", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sdk", ["ours", "sdk"])
async def test_one_write_per_step(sdk: str) -> None:
    bench = _load()
    short, long = await bench.one_rep(sdk, "sqlite", "async", 3, long_first=False)
    steps = bench.LONG - bench.SHORT
    per_step = {k: (long.counts.get(k, 0) - short.counts.get(k, 0)) / steps for k in long.counts}
    assert per_step["write"] == 1.0
    # the record alone, and now and then a segment when the record's journal tail overflows
    assert 1.0 <= per_step["ops"] <= 1.1
    assert long.wall_ms > short.wall_ms > 0
