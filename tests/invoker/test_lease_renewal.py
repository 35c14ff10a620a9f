"""An attempt's lease is renewed when it must be, not at every step.

The lease's end is the invocation record's due time, an indexed attribute: on DynamoDB a write
that moves it costs 3 write units instead of 1. So a step's commit keeps the lease while what
is left of it covers a whole attempt plus half the margin, and renews it only then; every
commit still leaves at least that much lease, so no engine runs an attempt past its lease.
"""

from __future__ import annotations

import itertools

import restate_lambda
from backends.api import Put
from backends.memory import MemoryBackend
from invoker import keys
from invoker import records as rec
from invoker.config import EngineConfig
from invoker.journal import decode_invocation
from invoker.policies import Leases, Policies
from invoker.registry import Registry
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from restate_lambda.testing import Harness
from tests.support.memory_stores import RecordingMemoryBackend

CONFIG = EngineConfig(attempt_timeout_s=120.0, lease_margin_ms=30_000)
LEASE_MS = 120_000 + 30_000
#: What every commit of an attempt leaves at least: a whole attempt plus half the margin.
FLOOR_MS = 120_000 + 15_000


def _leases(node: str = "node_a") -> Leases:
    registry = Registry(MemoryBackend(), ManualClock(), Transports())
    return Leases(node, Policies(registry, CONFIG), run_locally=False)


# ---------------------------------------------------------------------------- the rule


def test_a_fresh_claim_takes_a_whole_lease() -> None:
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    assert _leases().take(inv, 1_000) == 1_000 + LEASE_MS == inv.lease_until_ms
    assert (inv.status, inv.lease_owner, inv.attempts) == (rec.Status.RUNNING, "node_a", 1)


def test_the_lease_is_kept_while_it_covers_an_attempt_and_half_the_margin() -> None:
    leases = _leases()
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    end = leases.take(inv, 0)
    for now in (1, 5_000, LEASE_MS - FLOOR_MS):
        assert leases.extend(inv, now) == end
    renewed = leases.extend(inv, LEASE_MS - FLOOR_MS + 1)
    assert renewed == LEASE_MS - FLOOR_MS + 1 + LEASE_MS == inv.lease_until_ms


def test_a_next_attempt_of_the_same_engine_keeps_its_lease_and_gets_a_new_token() -> None:
    leases = _leases()
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    end = leases.take(inv, 0)
    token = inv.attempt_token
    assert leases.take(inv, 10_000) == end
    assert inv.attempts == 2 and inv.attempt_token != token


def test_a_lease_of_another_engine_or_an_ended_one_is_never_inherited() -> None:
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    _leases("node_b").take(inv, 0)  # node_b's attempt; its lease still runs for 150 s
    assert _leases("node_a").take(inv, 1_000) == 1_000 + LEASE_MS
    inv.status, inv.lease_owner = rec.Status.BACKING_OFF, None
    assert _leases("node_a").take(inv, 2_000) == 2_000 + LEASE_MS


# ---------------------------------------------------------------------------- the engine


svc = restate_lambda.Service("Leased")
CLOCK: list[ManualClock] = []


async def _take_time(i: int, ms: int) -> int:
    CLOCK[0].advance(ms)  # the step takes this long
    return i


@svc.handler()
async def steps(ctx: restate_lambda.Context, req: dict[str, int]) -> int:
    total = 0
    for i in range(req["n"]):
        total += await ctx.run_typed("step", _take_time, i=i, ms=req["ms"])
    return total


def _running_records(
    backend: RecordingMemoryBackend, inv_id: str
) -> list[tuple[rec.Invocation, int | None]]:
    out = []
    for batch in backend.batches:
        for op in batch:
            if isinstance(op, Put) and op.pk == keys.inv(inv_id) and op.sk == keys.META:
                inv = decode_invocation(op.value)
                if inv.status == rec.Status.RUNNING:
                    out.append((inv, op.due_ms))
    return out


async def _run(n: int, step_ms: int) -> list[tuple[rec.Invocation, int | None]]:
    backend = RecordingMemoryBackend()
    async with Harness(backend, config=CONFIG) as h:
        CLOCK[:] = [h.clock]
        await h.mount(restate_lambda.app([svc]))
        inv = await h.send("Leased", "steps", {"n": n, "ms": step_ms})
        assert await h.result(inv) == sum(range(n))
        return _running_records(backend, inv)


async def test_quick_steps_keep_the_due_time_of_the_record() -> None:
    records = await _run(n=5, step_ms=1_000)
    assert len(records) >= 6  # the claim and the 5 steps' commits
    assert len({due for _inv, due in records}) == 1
    assert all(due == inv.lease_until_ms for inv, due in records)


async def test_slow_steps_renew_the_lease_before_less_than_an_attempt_is_left() -> None:
    records = await _run(n=8, step_ms=10_000)
    dues = [due for _inv, due in records]
    renewals = sum(1 for a, b in itertools.pairwise(dues) if a != b)
    assert 2 <= renewals < len(records) - 1  # renewed now and then, not at every step
    for inv, due in records:
        assert due == inv.lease_until_ms
        assert due is not None and due - inv.modified_ms >= FLOOR_MS
