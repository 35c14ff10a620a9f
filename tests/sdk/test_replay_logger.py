"""``restate_lambda.getLogger``: records emitted while a handler replays its journal are dropped."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

import restate_lambda as restate
from restate_lambda.logger import RestateLoggingFilter, current_machine, is_replaying
from restate_lambda.testing import Harness

log = restate.getLogger("tests.replay_logger")
plain = logging.getLogger("tests.replay_logger.plain")

reminder = restate.Service("ReplayLogged")


@reminder.handler()
async def remind(ctx: restate.Context, text: str) -> str:
    """Logs before and after a step, sleeps (the next attempt replays), logs again."""
    log.info("start %s", text)
    plain.info("plain start %s", text)
    value = await ctx.run_typed("step", lambda: text.upper())
    log.info("after step %s", value)
    await ctx.sleep(timedelta(hours=1))
    log.info("woke %s", value)
    return value


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[_Collect]:
    handler = _Collect()
    parent = logging.getLogger("tests.replay_logger")
    parent.addHandler(handler)
    parent.setLevel(logging.DEBUG)
    yield handler
    parent.removeHandler(handler)


async def test_records_are_dropped_while_replaying(collected: _Collect) -> None:
    """Every line of the replay-aware logger shows once, though the handler runs twice; a plain
    logger's line shows once per attempt."""
    async with Harness() as h:
        await h.mount(restate.app([reminder]))
        inv = await h.send("ReplayLogged", "remind", "hi")
        await h.settle()
        await h.advance(timedelta(hours=1))
        assert "HI" == await h.result(inv)
    lines = [r.getMessage() for r in collected.records]
    assert ["start hi", "after step HI", "woke HI"] == [
        m for m in lines if not m.startswith("plain")
    ]
    assert lines.count("plain start hi") >= 2  # later attempts replayed it
    ours = [r for r in collected.records if r.name == "tests.replay_logger"]
    assert {inv} == {getattr(r, "restate_invocation_id", None) for r in ours}


def test_get_logger_adds_the_filter_once() -> None:
    """``getLogger`` twice gives the same logger with one filter; outside handlers nothing is
    dropped."""
    a = restate.getLogger("tests.replay_logger.twice")
    b = restate.getLogger("tests.replay_logger.twice")
    assert a is b
    assert 1 == sum(isinstance(f, RestateLoggingFilter) for f in a.filters)
    assert not is_replaying()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert RestateLoggingFilter().filter(record)


def test_filter_follows_the_machine() -> None:
    """The filter asks the current attempt's machine at emit time."""

    class Machine:
        invocation_id = "inv_1abc"
        replaying = True

        def is_replaying(self) -> bool:
            return self.replaying

    machine = Machine()
    token = current_machine.set(machine)
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        assert not RestateLoggingFilter().filter(record)
        machine.replaying = False
        assert RestateLoggingFilter().filter(record)
        assert "inv_1abc" == getattr(record, "restate_invocation_id", None)
    finally:
        current_machine.reset(token)
