"""How the ``restate-lambda`` CLI talks: Rich tables, ``--json``, one-line errors, exit codes.

Exit codes: 0 success; 1 the operation failed (the admin API refused it, or could not be
reached); 2 bad usage or configuration (also Typer's own usage errors); 3 not found (an unknown
deployment, invocation, or object without state).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped or captured: wide enough that ids and targets are never cut
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=not stream.isatty())


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` (one line) on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """A line for the user (stdout)."""
    typer.echo(message)


def note(message: str) -> None:
    """A remark that is not data (stderr), e.g. "no invocations"."""
    typer.echo(message, err=True)


def print_json(value: Any) -> None:
    """Machine-readable output of a command's ``--json``."""
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Rich table on stdout."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, header_style="bold")
    for name in columns:
        t.add_column(name, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    _console().print(t)


def progress(text: str) -> Any:
    """A spinner with ``text`` while a long call runs (stderr; silent when not a terminal)."""
    from rich.console import Console

    console = Console(file=sys.stderr)
    if not sys.stderr.isatty():
        import contextlib

        return contextlib.nullcontext()
    return console.status(text)


def admin_token() -> str | None:
    """The admin API's bearer token from the environment."""
    return os.environ.get("RESTATE_LAMBDA_ADMIN_TOKEN") or os.environ.get("RESTATE_AUTH_TOKEN")


def admin_call(
    method: str,
    admin_url: str,
    path: str,
    body: Any = None,
    *,
    not_found: str | None = None,
    timeout: float = 60,
) -> Any:
    """Call the admin API; on failure print one line and exit.

    ``not_found``: the message for a 404 (exit code 3); without it a 404 is a failure like
    the others.
    """
    import httpx

    token = admin_token()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    headers["accept"] = "application/json"  # /query answers Arrow otherwise, as Restate's does
    url = admin_url.rstrip("/") + path
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        fail(f"the admin API at {admin_url} did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        fail(
            f"cannot reach the admin API at {admin_url} ({type(exc).__name__}): is "
            "`restate-lambda dev` running? (set --admin-url or RESTATE_ADMIN_URL)"
        )
    if response.status_code == 404 and not_found is not None:
        fail(not_found, EXIT_NOT_FOUND)
    if response.status_code >= 400:
        fail(f"{_error_message(response)} (HTTP {response.status_code} from {method} {path})")
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        fail(f"the admin API answered {method} {path} with something that is not JSON")


def admin_query(admin_url: str, sql: str, *, timeout: float = 60) -> list[dict[str, Any]] | None:
    """Rows of ``sql`` from ``POST /query`` (JSON), or None when the admin API answers no SQL
    (no ``sql`` extra: 501) or refuses this query (a note says why)."""
    import httpx

    token = admin_token()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    headers["accept"] = "application/json"
    try:
        response = httpx.post(
            admin_url.rstrip("/") + "/query",
            json={"query": sql},
            headers=headers,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        note(f"the admin API did not answer SQL ({type(exc).__name__})")
        return None
    if response.status_code == 501:
        return None
    if response.status_code >= 400:
        note(f"the admin API refused SQL: {_error_message(response)}")
        return None
    try:
        rows = response.json().get("rows")
    except (ValueError, AttributeError):
        return None
    return rows if isinstance(rows, list) else None


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return str(text[0][:300]) if text else str(response.reason_phrase)
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key]).splitlines()[0][:500]
    return json.dumps(body)[:300]


def sql_string(value: str) -> str:
    """``value`` as an SQL string literal (single quotes, embedded quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def show_value(raw: bytes) -> str:
    """A state value for people: JSON compactly when it is JSON, else text or hex."""
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def json_value(raw: bytes) -> Any:
    """A state value for ``--json``: the decoded JSON, else the text, else ``0x`` hex."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def when(ms: int | str | None) -> str:
    """An epoch-ms timestamp as local ISO time (seconds); text as it is; empty for none."""
    if not ms:
        return ""
    if isinstance(ms, str):
        return ms
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")
