"""``restate-lambda invocations describe``: the journal with entry names, values (cut), results,
ISO 8601 times and wake-up times, read through ``/query`` (``sys_journal``), and the stack trace
of the last failed attempt; types and sizes only when the admin API has no SQL."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import infra.cli_admin
from infra.cli import app
from tests.support.dev import DevServer, cli

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, dict[str, str]]]:
    """A dev server with a failing, a sleeping and a long-valued invocation."""
    server = DevServer(
        tmp_path_factory.mktemp("describe") / "d", "tests/ui/shop_app.py", "tests/ui/cart_app.py"
    )
    try:
        server.wait_for("(ready)")
        server.drain()

        def send(path: str, body: Any) -> str:
            r = httpx.post(f"{server.ingress}{path}/send", json=body, timeout=10)
            r.raise_for_status()
            inv_id: str = r.json()["invocationId"]
            return inv_id

        ids = {
            "buy": send("/Shop/buy", "o-1"),
            "nap": send("/Desk/nap", 2),
            "long": send("/Cart/c2/add", "x" * 300),
        }
        deadline = time.monotonic() + 30
        while "attempt failed (2)" not in server.output or ids["buy"] not in server.output:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.1)
        yield server, ids
    finally:
        server.stop()


def _describe(server: DevServer, inv_id: str, *extra: str) -> str:
    done = cli("invocations", "describe", inv_id, *extra, "--admin-url", server.admin)
    assert 0 == done.returncode, done.stderr
    return done.stdout


def test_a_failing_invocation_shows_steps_values_and_its_stack_trace(
    served: tuple[DevServer, dict[str, str]],
) -> None:
    """Names of the steps, the value a step produced, where it fails, and the SDK's trace."""
    server, ids = served
    out = _describe(server, ids["buy"])
    assert re.search(rf"created\s+{ISO}", out) and re.search(r"retries\s+[1-9]", out), out
    if re.search(r"status\s+backing-off", out):  # not in the middle of an attempt
        assert re.search(rf"next retry\s+{ISO}", out), out
    assert re.search(r"last failure\s+\[500\] ValueError\('card declined", out)
    assert "at charge" in out
    assert re.search(r"1\s+Run 'quote'\s+\{\"order\":\"o-1\",\"amount\":42\}", out), out
    assert re.search(r"3\s+Run 'charge'\s+failing: \[500\] ValueError", out), out
    trace = out.split("stack trace of the last failed attempt:\n", 1)[1]
    assert trace.startswith("Traceback (most recent call last):")
    assert "ValueError: card declined for order o-1 (42 EUR)" in trace


def test_wake_up_times_and_cut_values(served: tuple[DevServer, dict[str, str]]) -> None:
    """A sleep shows when it wakes (ISO 8601 UTC); long values are cut with an ellipsis."""
    server, ids = served
    nap = _describe(server, ids["nap"])
    assert re.search(rf"Sleep 'nap'\s+\(waiting\)\s+wakes {ISO}", nap), nap
    long = _describe(server, ids["long"])
    assert '"' + "x" * 78 + "…" in long and "x" * 100 not in long


def test_json_has_the_timeline(served: tuple[DevServer, dict[str, str]]) -> None:
    """``--json``: the invocation's row plus ``timeline`` entries."""
    server, ids = served
    row = json.loads(_describe(server, ids["buy"], "--json"))
    assert ids["buy"] == row["id"]
    names = [(e["kind"], e["name"]) for e in row["timeline"]]
    assert ("Run", "quote") in names and ("Run", "charge") in names
    failing = next(e for e in row["timeline"] if e["attempts"])
    assert "ValueError: card declined" in failing["attempts"]["stacktrace"]


def test_without_sql_the_journal_types_and_sizes_are_shown(
    served: tuple[DevServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin API without the SQL engine (the ``sql`` extra) still gets a journal."""
    server, ids = served
    monkeypatch.setattr(infra.cli_admin, "admin_query", lambda *a, **k: None)
    result = CliRunner().invoke(
        app, ["invocations", "describe", ids["nap"], "--admin-url", server.admin]
    )
    assert 0 == result.exit_code, result.output
    assert re.search(r"#\s+ENTRY\s+BYTES", result.output)
    assert "SLEEP_COMMAND" in result.output
