"""The journal's tail in the invocation record, and store-side expiry of completed records.

Small commits append their entries to the record (one item written per step); a commit that
overflows the budget writes one segment and empties the tail; the journal reads back in order
either way, across restarts. On a store with item expiry a completed invocation that left only
its record gets an expiry instead of a due time (no purge); anything else left behind keeps the
sweeper's purge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

import restate_lambda
from backends.api import Item, Put, WriteOp
from invoker import journal, keys
from invoker import records as rec
from invoker.journal import decode_invocation, load_partition
from restate_lambda.testing import Harness
from tests.support.memory_stores import RecordingMemoryBackend

# ---------------------------------------------------------------------------- the rule


def _entries(n: int, size: int = 10, first: int = 0) -> list[tuple[int, bytes]]:
    return [(0x0400, bytes([first + i]) * size) for i in range(n)]


def _stored(inv: rec.Invocation, segments: Sequence[WriteOp]) -> list[Item]:
    items = [Item(keys.inv(inv.id), keys.META, rec.encode(inv), 1)]
    items += [Item(op.pk, op.sk, op.value, 1) for op in segments if isinstance(op, Put)]
    return sorted(items, key=lambda i: i.sk)


def test_entries_stay_in_the_record_until_the_budget_then_one_segment_takes_them_all() -> None:
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    written: list[WriteOp] = []
    journal_so_far: list[tuple[int, bytes]] = []
    spilled_at: list[int] = []
    for commit in range(40):
        new = _entries(2, size=20, first=2 * commit)
        start = inv.journal_len - len(inv.tail)
        ops = journal.append(inv, new)
        journal_so_far += new
        if ops:
            (seg,) = ops
            assert isinstance(seg, Put) and seg.sk == keys.journal(start) and seg.expect == 0
            spilled_at.append(commit)
            assert inv.tail == []
        else:
            assert inv.tail[-2:] == new
        written += ops
        assert inv.journal_len == len(journal_so_far)
        # what a reader assembles from the stored items is the journal, in order
        loaded = load_partition(_stored(inv, written))
        assert loaded is not None and loaded.entries == journal_so_far
    # 2 x 24 bytes a commit: the 384-byte budget holds 8 commits, the 9th spills them all
    assert spilled_at[:3] == [8, 17, 26]


def test_an_entry_larger_than_the_budget_goes_to_a_segment_at_once() -> None:
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    assert journal.append(inv, _entries(1)) == []
    big = _entries(1, size=journal.TAIL_BUDGET_BYTES, first=1)
    (seg,) = journal.append(inv, big)
    assert isinstance(seg, Put) and seg.sk == keys.journal(0)
    assert journal.decode_segment(seg.value) == [*_entries(1), *big]
    assert (inv.journal_len, inv.tail, journal.in_segments(inv)) == (2, [], True)


def test_a_failed_commit_is_undone_by_restoring_length_and_list() -> None:
    inv = rec.Invocation(id="inv_1", service="S", handler="h")
    journal.append(inv, _entries(2))
    old_len, old_tail = inv.journal_len, inv.tail
    journal.append(inv, _entries(3, first=5))
    assert old_tail == _entries(2)  # replaced, not mutated
    inv.journal_len, inv.tail = old_len, old_tail
    assert load_partition(_stored(inv, [])) is not None


# ---------------------------------------------------------------------------- the engine


svc = restate_lambda.Service("Tailed")
wf = restate_lambda.Workflow("TailedFlow")


async def _value(v: int, size: int) -> str:
    return "x" * size + str(v)


@svc.handler()
async def steps(ctx: restate_lambda.Context, req: dict[str, int]) -> int:
    total = 0
    for i in range(req["n"]):
        total += len(await ctx.run_typed("step", _value, v=i, size=req["size"]))
    return total


@svc.handler()
async def greet(ctx: restate_lambda.Context, name: str) -> str:
    return f"Hello, {name}!"


@svc.handler()
async def calls_greet(ctx: restate_lambda.Context, name: str) -> str:
    greeting: str = await ctx.service_call(greet, arg=name)
    return greeting


@wf.main()
async def run(ctx: restate_lambda.WorkflowContext, name: str) -> str:
    return f"ran {name}"


def _inv_puts(batch: list[WriteOp], inv_id: str) -> list[Put]:
    return [op for op in batch if isinstance(op, Put) and op.pk == keys.inv(inv_id)]


def _journal_puts(backend: RecordingMemoryBackend, inv_id: str) -> int:
    return sum(
        1
        for batch in backend.batches
        for op in _inv_puts(batch, inv_id)
        if op.sk.startswith(keys.JOURNAL_PREFIX)
    )


async def test_small_steps_write_only_the_record_and_replay_after_a_restart() -> None:
    backend = RecordingMemoryBackend()
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc]))
        inv = await h.send("Tailed", "steps", {"n": 4, "size": 5})
        assert await h.result(inv) == 4 * 6
        step_batches = [b for b in backend.batches if _inv_puts(b, inv)]
        assert len(step_batches) >= 5  # creation, 4 checkpoints or attempts, completion
        assert _journal_puts(backend, inv) == 0
        assert all([op.sk for op in _inv_puts(b, inv)] == [keys.META] for b in step_batches)
        entries = await h.journal(inv)
        await h.restart()
        assert await h.journal(inv) == entries
        assert await h.result(inv) == 24


async def test_large_steps_spill_into_segments_and_the_journal_reads_back_whole() -> None:
    backend = RecordingMemoryBackend()
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc]))
        small = await h.send("Tailed", "steps", {"n": 12, "size": 20})
        large = await h.send("Tailed", "steps", {"n": 3, "size": 2 * journal.TAIL_BUDGET_BYTES})
        assert await h.result(small) == 12 * 20 + 10 * 1 + 2 * 2  # str(i): 10 of 1 digit, 2 of 2
        assert await h.result(large) == 3 * (2 * journal.TAIL_BUDGET_BYTES + 1)
        assert 1 <= _journal_puts(backend, small) < 12  # the tail spilled now and then
        assert _journal_puts(backend, large) >= 3  # every large step's commit
        read = await h.journal(small)
        assert [e.index for e in read] == list(range(len(read)))
        assert [e.name for e in read if e.type == "RUN_COMMAND"] == ["step"] * 12
        described = await h.describe(small)
        assert described["journal_size"] == len(await h.journal(small))


def _completion(backend: RecordingMemoryBackend, inv_id: str) -> Put:
    for batch in reversed(backend.batches):
        for op in _inv_puts(batch, inv_id):
            if op.sk == keys.META and decode_invocation(op.value).status == rec.Status.COMPLETED:
                return op
    raise AssertionError(f"no completion of {inv_id}")


async def test_a_completed_record_alone_expires_in_the_store_instead_of_being_purged() -> None:
    backend = RecordingMemoryBackend(expiry=True)
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc, wf]))
        alone = await h.send("Tailed", "steps", {"n": 2, "size": 5}, idempotency_key="k")
        assert await h.result(alone) == 12
        done = _completion(backend, alone)
        record = decode_invocation(done.value)
        assert record.expires_ms is not None
        assert (done.expires_ms, done.due_ms) == (record.expires_ms, None)

        # spilled journal: segments to delete, so the sweeper purges at retention's end
        spilled = await h.send("Tailed", "steps", {"n": 1, "size": 2 * journal.TAIL_BUDGET_BYTES})
        await h.result(spilled)
        done = _completion(backend, spilled)
        assert done.expires_ms is None and done.due_ms is not None
        # a caller to notify (an outbox item in the completing commit)
        parent = await h.send("Tailed", "calls_greet", "Ada")
        assert await h.result(parent) == "Hello, Ada!"
        child = next(i["id"] for i in await h.invocations() if i["target_handler_name"] == "greet")
        done = _completion(backend, child)
        assert done.expires_ms is None and done.due_ms is not None
        # a workflow's purge also deletes its state and promises
        flow = await h.send("TailedFlow", "run", "once", key="w1")
        assert await h.result(flow) == "ran once"
        done = _completion(backend, flow)
        assert done.expires_ms is None and done.due_ms is not None

        # the sweeper purges the others and leaves the expiring record to the store
        await h.advance(timedelta(days=2))
        for expiring in (alone, parent):  # the parent's call went out in an earlier commit
            assert await backend.get(keys.inv(expiring), keys.META) is not None
        for purged in (spilled, child, flow):
            assert await backend.query(keys.inv(purged)) == []


@pytest.mark.parametrize("expiry", [False, True])
async def test_without_expiry_every_completed_invocation_is_purged(expiry: bool) -> None:
    backend = RecordingMemoryBackend(expiry=expiry)
    async with Harness(backend, sole=False) as h:
        await h.mount(restate_lambda.app([svc]))
        inv = await h.send("Tailed", "greet", "Bo", idempotency_key="k")
        assert await h.result(inv) == "Hello, Bo!"
        await h.advance(timedelta(days=2))
        left: Any = await backend.query(keys.inv(inv))
        assert (left != []) == expiry  # with expiry, the store deletes it (not emulated here)
