"""Every backend against a plain-dict oracle, driven by a Hypothesis state machine.

The oracle is deliberately naive (a dict and sorting on every read), independent of
``MemoryBackend``, so the fake is verified rather than trusted.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from backends.api import Backend, Check, ConflictError, Delete, Item, Put, WriteOp
from tests.backends.conftest import BACKENDS, make_backend

_T = TypeVar("_T")

PKS = st.sampled_from(["a", "a/b", "ab", "b#", "é", "😀", ""])
SKS = st.text(alphabet="ab/é😀", max_size=3)
KEYS = st.tuples(PKS, SKS)
PREFIXES = st.text(alphabet="ab/é😀", max_size=2)
LIMITS = st.none() | st.integers(min_value=0, max_value=4)
TIMES = st.integers(min_value=0, max_value=20)
VALUES = st.binary(max_size=8)


@dataclass(frozen=True)
class OpSpec:
    """An operation before its ``expect`` is resolved against the oracle's state."""

    kind: str  # "put" | "delete" | "check"
    key: tuple[str, str]
    value: bytes
    expect: str  # "none" | "absent" | "current" | "wrong"
    due: int | None


OPS = st.builds(
    OpSpec,
    kind=st.sampled_from(["put", "put", "delete", "check"]),
    key=KEYS,
    value=VALUES,
    expect=st.sampled_from(["none", "absent", "current", "current", "wrong"]),
    due=st.none() | TIMES,
)


class BackendMachine(RuleBasedStateMachine):
    """Random batches and reads; every result must match the oracle."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[tuple[str, str], Item] = {}
        self.tmp = tempfile.mkdtemp(prefix="backend-sm-")
        self.runner = asyncio.Runner()
        self.cm: AbstractAsyncContextManager[Backend] = make_backend(self.kind, Path(self.tmp))
        self.backend = self.run(self.cm.__aenter__())

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            self.run(self.cm.__aexit__(None, None, None))
            self.runner.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the oracle ------------------------------------------------------------------------

    def _expect(self, spec: OpSpec) -> int | None:
        current = self.model.get(spec.key)
        version = 0 if current is None else current.version
        return {
            "none": None if spec.kind != "check" else version,
            "absent": 0,
            "current": version,
            "wrong": version + 1 if version == 0 or spec.key[1] == "a" else version - 1,
        }[spec.expect]

    def _holds(self, key: tuple[str, str], expect: int | None) -> bool:
        current = self.model.get(key)
        return expect is None or expect == (0 if current is None else current.version)

    # -- rules -----------------------------------------------------------------------------

    @rule(specs=st.lists(OPS, min_size=1, max_size=4, unique_by=lambda s: s.key))
    def write(self, specs: list[OpSpec]) -> None:
        ops: list[WriteOp] = []
        for spec in specs:
            expect = self._expect(spec)
            pk, sk = spec.key
            if spec.kind == "put":
                ops.append(Put(pk, sk, spec.value, expect=expect, due_ms=spec.due))
            elif spec.kind == "delete":
                ops.append(Delete(pk, sk, expect=expect))
            else:
                ops.append(Check(pk, sk, 0 if expect is None else expect))
        failing = next(
            (i for i, op in enumerate(ops) if not self._holds(_key(op), op.expect)), None
        )
        if failing is not None:
            try:
                self.run(self.backend.write(ops))
            except ConflictError as e:
                assert failing == e.index
            else:
                raise AssertionError(f"expected a conflict at {failing}: {ops}")
            return
        self.run(self.backend.write(ops))
        for op in ops:
            if isinstance(op, Put):
                old = self.model.get(_key(op))
                version = 1 if old is None else old.version + 1
                self.model[_key(op)] = Item(op.pk, op.sk, op.value, version, op.due_ms)
            elif isinstance(op, Delete):
                self.model.pop(_key(op), None)

    @rule(key=KEYS)
    def get(self, key: tuple[str, str]) -> None:
        assert self.model.get(key) == self.run(self.backend.get(*key))

    @rule(pk=PKS, prefix=PREFIXES, after=st.none() | SKS, limit=LIMITS, reverse=st.booleans())
    def query(
        self, pk: str, prefix: str, after: str | None, limit: int | None, reverse: bool
    ) -> None:
        items = sorted(
            (i for (p, s), i in self.model.items() if p == pk and s.startswith(prefix)),
            key=lambda i: i.sk,
            reverse=reverse,
        )
        if after is not None:
            items = [i for i in items if (i.sk < after if reverse else i.sk > after)]
        expected = items if limit is None else items[:limit]
        got = self.run(self.backend.query(pk, prefix, after=after, limit=limit, reverse=reverse))
        assert expected == got

    @rule(until=TIMES, limit=st.integers(min_value=0, max_value=5))
    def due(self, until: int, limit: int) -> None:
        items = sorted(
            (i for i in self.model.values() if i.due_ms is not None and i.due_ms <= until),
            key=lambda i: (i.due_ms, i.pk, i.sk),
        )
        assert items[:limit] == self.run(self.backend.due(until, limit))

    @rule(pk_prefix=st.sampled_from(["", "a", "a/", "b", "é"]), sk=SKS, limit=LIMITS)
    def scan(self, pk_prefix: str, sk: str, limit: int | None) -> None:
        items = sorted(
            (i for (p, s), i in self.model.items() if p.startswith(pk_prefix) and s == sk),
            key=lambda i: i.pk,
        )
        expected = items if limit is None else items[:limit]
        assert expected == self.run(self.backend.scan(pk_prefix, sk, limit=limit))

    @invariant()
    def partitions_match(self) -> None:
        for pk in {p for p, _ in self.model} | {"a"}:
            expected = sorted((i for i in self.model.values() if i.pk == pk), key=lambda i: i.sk)
            assert expected == self.run(self.backend.query(pk))


def _key(op: WriteOp) -> tuple[str, str]:
    return (op.pk, op.sk)


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_backend_matches_oracle(kind: str) -> None:
    """Random sequences of batches and reads agree with the dict oracle."""
    machine = type(f"{kind.title()}Machine", (BackendMachine,), {"kind": kind})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
