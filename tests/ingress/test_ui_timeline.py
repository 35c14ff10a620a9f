"""``ingress.ui.timeline``: journal rows (JSON from /query, or row builders' Python values) as a
timeline with names, value previews, results paired with their commands, wake-up times and the
last failure on the entry it happened at."""

from __future__ import annotations

import json
from typing import Any

from ingress.ui.timeline import Attempts, cut, failure_of, iso_time, preview, timeline


def _cmd(index: int, variant: str, body: dict[str, Any], **row: Any) -> dict[str, Any]:
    return {
        "index": index,
        "entry_type": f"Command: {variant}",
        "entry_json": json.dumps({"Command": {variant: body}}),
        **row,
    }


def _note(index: int, variant: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "entry_type": f"Notification: {variant}",
        "entry_json": json.dumps({"Notification": {"Completion": {variant: body}}}),
    }


def _bytes(text: str) -> list[int]:
    return list(text.encode())


def test_previews_and_times() -> None:
    """JSON compactly, text, hex; cut with an ellipsis; times as ISO UTC with milliseconds."""
    assert '{"a":[1,2]}' == preview(b'{ "a": [1, 2] }')
    assert "plain text" == preview(b"plain text")
    assert "0xff00" == preview(b"\xff\x00")
    assert "(empty)" == preview(b"")
    assert preview(None) is None
    assert "x" * 9 + "…" == preview(b"x" * 50, 10)
    assert "abc" == cut("abc", 3)
    assert "2026-08-22T10:00:00.000Z" == iso_time(1_787_392_800_000)
    assert "2026-08-22T10:00:00.000Z" == iso_time("2026-08-22T10:00:00Z")
    assert "2026-08-22T10:00:00.500Z" == iso_time("2026-08-22T10:00:00.5+00:00")
    assert iso_time(None) is None and iso_time("") is None


def test_commands_get_the_results_of_their_completions() -> None:
    """A run shows its value; a call its target, parameter, callee id and result; a sleep its
    wake-up time; state its key and value."""
    rows = [
        _cmd(0, "Input", {"headers": [], "payload": _bytes('"o-1"'), "name": ""}),
        _cmd(1, "Run", {"completion_id": 1, "name": "quote"}, name="quote", completed=True),
        _note(2, "Run", {"completion_id": 1, "result": {"Success": _bytes('{"amount": 42}')}}),
        _cmd(
            3,
            "Call",
            {
                "request": {"parameter": _bytes('"hi"')},
                "invocation_id_completion_id": 2,
                "result_completion_id": 3,
                "name": "",
            },
            invoked_target="Greeter/greet",
        ),
        _note(4, "CallInvocationId", {"completion_id": 2, "invocation_id": "inv_1child"}),
        _note(
            5, "Call", {"completion_id": 3, "result": {"Failure": {"code": 418, "message": "no"}}}
        ),
        _cmd(
            6,
            "Sleep",
            {"wake_up_time": 1, "completion_id": 4, "name": "nap"},
            name="nap",
            sleep_wakeup_at="2026-08-22T10:00:00Z",
            completed=False,
        ),
        _cmd(7, "SetState", {"key": "count", "value": _bytes("3"), "name": ""}),
        {"index": 8, "entry_type": "Custom: 0xFC01", "raw": "00ff"},
    ]
    entries = timeline(rows)
    assert [e.index for e in entries] == list(range(9))
    assert '"o-1"' == entries[0].value
    run = entries[1]
    assert ("Run 'quote'", '{"amount":42}', 2) == (run.title, run.result, run.completed_by)
    assert 1 == entries[2].completes
    call = entries[3]
    assert ("Greeter/greet", '"hi"', "inv_1child") == (call.detail, call.value, call.invoked_id)
    assert "[418] no" == call.result_failure and call.completed and 5 == call.completed_by
    assert "[418] no" == entries[5].failure
    sleep = entries[6]
    assert ("2026-08-22T10:00:00.000Z", False) == (sleep.wakeup_at, sleep.completed)
    assert ("count", "3") == (entries[7].detail, entries[7].value)
    assert ("other", 2) == (entries[8].category, entries[8].raw_length)


def test_python_rows_work_too() -> None:
    """Rows from the row builders (bytes, epoch ms) read the same."""
    rows = [
        _cmd(0, "Sleep", {"completion_id": 1, "name": ""}, sleep_wakeup_at=1_787_392_800_000),
    ]
    rows[0]["raw"] = b"\x01\x02\x03"
    entry = timeline(rows)[0]
    assert ("2026-08-22T10:00:00.000Z", 3) == (entry.wakeup_at, entry.raw_length)


def test_the_failure_goes_on_its_command_or_at_the_end() -> None:
    """The related command index counts commands only; without one, a last pseudo entry."""
    rows = [
        _cmd(0, "Input", {"payload": [], "name": ""}),
        _cmd(1, "Run", {"completion_id": 1, "name": "quote"}, name="quote"),
        _note(2, "Run", {"completion_id": 1, "result": {"Success": _bytes("1")}}),
        _cmd(3, "Run", {"completion_id": 2, "name": "charge"}, name="charge", completed=False),
    ]
    invocation = {
        "last_failure": "[500] ValueError('x')\nTraceback (most recent call last):\n"
        "ValueError: x\n",
        "retry_count": 3,
        "next_retry_at": "2026-08-22T10:00:01Z",
        "last_failure_related_command_index": 2,
        "last_failure_related_command_name": "charge",
    }
    failure, related = failure_of(invocation)
    assert failure is not None and 2 == related
    assert "[500] ValueError('x')" == failure.message
    assert "Traceback (most recent call last):\nValueError: x" == failure.stacktrace
    assert (3, "2026-08-22T10:00:01.000Z") == (failure.retry_count, failure.next_retry_at)
    entries = timeline(rows, failure, related)
    assert entries[3].attempts is failure and len(entries) == 4
    alone = timeline(rows, Attempts("[500] boom", related="?"), None)
    assert ("Attempt", "[500] boom") == (
        alone[-1].kind,
        alone[-1].attempts and alone[-1].attempts.message,
    )


def test_journal_events_carry_the_stack_trace() -> None:
    """``sys_journal_events``' TransientError gives the message and stack trace apart."""
    event = {
        "event_json": json.dumps(
            {
                "ty": "TransientError",
                "error_code": 500,
                "error_message": "boom\nsecond line",
                "error_stacktrace": "Traceback ...\nboom",
            }
        )
    }
    failure, _ = failure_of({"last_failure": "[500] boom\nsecond line\nTraceback ..."}, [event])
    assert failure is not None
    assert ("[500] boom\nsecond line", "Traceback ...\nboom") == (
        failure.message,
        failure.stacktrace,
    )
    assert (None, None) == failure_of({"status": "running"})
