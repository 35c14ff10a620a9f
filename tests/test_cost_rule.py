"""``benchmarks/cost_bench.py`` recounts DynamoDB write units with AWS's per-item rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "cost_bench.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cost_bench", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_bench"] = module
    spec.loader.exec_module(module)
    return module


def _item(value_bytes: int) -> dict[str, dict[str, object]]:
    return {
        "pk": {"S": "inv/x"},
        "sk": {"S": "meta"},
        "v": {"N": "3"},
        "b": {"B": b"x" * value_bytes},
    }


def test_transactions_cost_two_units_per_started_kilobyte_of_each_item() -> None:
    rule = _load().rule_write_units
    small, big = _item(100), _item(1500)  # under 1 KB; 1.5 KB: two started KB
    txn = {
        "TransactItems": [
            {"Put": {"Item": small}},
            {"Put": {"Item": big}},
            {"Delete": {"Key": {}}},
            {"ConditionCheck": {"Key": {}}},
        ]
    }
    assert rule("TransactWriteItems", txn) == 2 + 4 + 2 + 2
    assert rule("PutItem", {"Item": small}) == 1
    assert rule("PutItem", {"Item": big}) == 2
    assert rule("DeleteItem", {"Key": {}}) == 1
    batch = {"RequestItems": {"t": [{"DeleteRequest": {}}] * 3 + [{"PutRequest": {"Item": big}}]}}
    assert rule("BatchWriteItem", batch) == 3 + 2
    assert rule("GetItem", {}) == 0
