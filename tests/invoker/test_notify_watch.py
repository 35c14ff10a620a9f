"""A sole engine's attempts skip reading their notifications when none can have arrived
(:mod:`invoker.notify_watch`): the rules of the watch, and that an attempt still sees a
notification stored while it runs."""

from __future__ import annotations

from typing import Any

import pytest

import restate_lambda
from backends.api import Check, Delete, Item, Put
from backends.memory import MemoryBackend
from invoker import keys
from invoker.notify_watch import NotificationWatch
from restate_lambda.testing import Harness

PK = keys.inv("inv_1")
OTHER = keys.inv("inv_2")


def _note(pk: str = PK) -> Put:
    return Put(pk, keys.completion_notification(1), b"x")


def test_a_read_that_found_nothing_makes_the_partition_quiet_until_a_write_to_it_ends() -> None:
    watch = NotificationWatch()
    assert not watch.quiet(PK)  # never read
    watch.read(PK, watch.mark(), found=False)
    assert watch.quiet(PK)
    watch.ended([_note(OTHER)], known=True)  # another invocation's notification
    watch.ended(
        [Put(PK, keys.META, b"m"), Delete(PK, "n/c/1"), Check(PK, keys.META, 1)], known=True
    )
    assert watch.quiet(PK)  # no notification written to PK
    watch.ended([Put(PK, keys.META, b"m"), _note()], known=True)
    assert not watch.quiet(PK)
    watch.read(PK, watch.mark(), found=False)
    assert watch.quiet(PK)


def test_a_write_that_ends_during_a_read_makes_the_read_untrusted() -> None:
    watch = NotificationWatch()
    mark = watch.mark()
    watch.ended([_note()], known=True)  # applied while the read ran: the read may have missed it
    watch.read(PK, mark, found=False)
    assert not watch.quiet(PK)


def test_a_read_that_found_notifications_is_not_remembered() -> None:
    watch = NotificationWatch()
    watch.read(PK, watch.mark(), found=False)
    watch.read(PK, watch.mark(), found=True)  # the commit journaling them may not apply
    assert not watch.quiet(PK)


def test_a_write_of_unknown_outcome_keeps_its_partition_read_for_good() -> None:
    watch = NotificationWatch()
    watch.ended([_note()], known=False)  # may still be applied by the backend later
    for _ in range(3):
        watch.read(PK, watch.mark(), found=False)
        assert not watch.quiet(PK)
    watch.read(OTHER, watch.mark(), found=False)
    assert watch.quiet(OTHER)


def test_past_its_limit_the_watch_forgets_and_distrusts_reads_started_before() -> None:
    watch = NotificationWatch(limit=2)
    watch.read(PK, watch.mark(), found=False)
    mark = watch.mark()  # a read of OTHER starts
    watch.ended([_note(OTHER)], known=True)
    watch.ended([_note(keys.inv("a")), _note(keys.inv("b"))], known=True)  # over the limit
    watch.read(OTHER, mark, found=False)
    assert not watch.quiet(OTHER)
    assert not watch.quiet(PK)  # forgotten: read again
    watch.read(PK, watch.mark(), found=False)
    assert watch.quiet(PK)


def test_too_many_unknown_outcomes_turn_the_skipping_off() -> None:
    watch = NotificationWatch(limit=2)
    watch.ended([_note(keys.inv(str(i))) for i in range(3)], known=False)
    watch.read(PK, watch.mark(), found=False)
    assert not watch.quiet(PK)


# -- in an engine -----------------------------------------------------------------------------


class _Counting(MemoryBackend):
    """Counts range reads of notifications."""

    def __init__(self) -> None:
        super().__init__()
        self.note_reads = 0

    async def query(self, pk: str, prefix: str = "", **kw: Any) -> list[Item]:
        if prefix == keys.NOTIFY_PREFIX:
            self.note_reads += 1
        return await super().query(pk, prefix, **kw)


svc = restate_lambda.Service("Watched")
HARNESS: list[Harness] = []
STARTS: list[int] = []


async def _step(v: int) -> int:
    return v + 1


@svc.handler()
async def steps(ctx: restate_lambda.Context, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.run_typed("step", _step, v=x)
    return x


@svc.handler()
async def resolved_meanwhile(ctx: restate_lambda.Context) -> str:
    STARTS.append(1)
    awk_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("before", _step, v=0)  # a checkpoint that finds nothing pending

    async def resolve() -> str:
        await HARNESS[0].engine.resolve_awakeable(awk_id, b'"hi"')
        return "resolved"

    await ctx.run_typed("resolve", resolve)  # its checkpoint journals the completion first
    return f"got {await fut}"


@pytest.mark.parametrize("sole", [True, False])
async def test_a_notification_stored_while_the_attempt_runs_reaches_its_next_checkpoint(
    sole: bool,
) -> None:
    STARTS.clear()
    async with Harness(_Counting(), sole=sole) as h:
        HARNESS[:] = [h]
        await h.mount(restate_lambda.app([svc]))
        assert "got hi" == await h.call("Watched", "resolved_meanwhile", None)
    assert STARTS == [1]  # one attempt: the handler never suspended to wait for it


@pytest.mark.parametrize(("sole", "reads"), [(True, 1), (False, 10)])
async def test_a_sole_engine_reads_an_attempts_notifications_once(sole: bool, reads: int) -> None:
    backend = _Counting()
    async with Harness(backend, sole=sole) as h:
        await h.mount(restate_lambda.app([svc]))
        assert 10 == await h.call("Watched", "steps", 10)
        before = backend.note_reads
        assert 10 == await h.call("Watched", "steps", 10)
        assert backend.note_reads - before == reads
