"""``restate-lambda schedules`` / ``subscriptions`` / ``invocations restart-as-new``, against the
admin app of a real engine served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from backends.memory import MemoryBackend
from infra.cli_admin import invocations_app
from infra.cli_schedules import schedules_app, subscriptions_app
from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity
from invoker.api import InvokeRequest, Target
from invoker.engine import Engine
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from tests.schedules import app as sched_app

runner = CliRunner()
cli = typer.Typer()
cli.add_typer(schedules_app, name="schedules")
cli.add_typer(subscriptions_app, name="subscriptions")
cli.add_typer(invocations_app, name="invocations")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Engine, asyncio.AbstractEventLoop]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = Engine(MemoryBackend(), ManualClock(), Transports())
    engine.transports.asgi.mount("sched", sched_app.app)
    config = uvicorn.Config(
        create_admin_app(engine, security=AdminSecurity.for_bind("127.0.0.1", None)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    async def main() -> None:
        await engine.start()
        await engine.register_deployment("asgi://sched")
        await server.serve()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine, loop
    server.should_exit = True
    thread.join(timeout=10)


def _run(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, [*args, "--admin-url", url])
    return result.exit_code, result.output


def _json(url: str, *args: str) -> object:
    """A ``--json`` command's standard output, parsed (the engine serving this test runs in
    this process: its log lines go to stderr, which ``result.output`` mixes in)."""
    result = runner.invoke(cli, [*args, "--admin-url", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schedules_commands(served: tuple[str, Engine, asyncio.AbstractEventLoop]) -> None:
    url, _engine, _loop = served
    code, out = _run(
        url, "schedules", "create", "nightly", "0 3 * * *", "Cron/tick",
        "--timezone", "Europe/Berlin", "--body", '{"a": 1}',
    )  # fmt: skip
    assert code == 0, out
    assert "nightly" in out and "Europe/Berlin" in out
    listed = _json(url, "schedules", "list", "--json")
    assert isinstance(listed, list)
    ids = [s["id"] for s in listed]
    assert "nightly" in ids and "Cron.declared" in ids
    code, out = _run(url, "schedules", "pause", "nightly")
    assert code == 0 and "paused: nightly" in out
    described = _json(url, "schedules", "describe", "nightly", "--json")
    assert isinstance(described, dict) and described["paused"] is True
    code, out = _run(url, "schedules", "resume", "nightly")
    assert code == 0, out
    code, out = _run(url, "schedules", "create", "bad", "61 * * * *", "Cron/tick")
    assert code == 1 and "invalid cron expression" in out
    code, out = _run(url, "schedules", "delete", "nightly")
    assert code == 0, out
    code, out = _run(url, "schedules", "describe", "nightly")
    assert code == 3 and "no schedule nightly" in out


def test_subscriptions_and_restart(served: tuple[str, Engine, asyncio.AbstractEventLoop]) -> None:
    url, engine, loop = served
    code, out = _run(url, "subscriptions", "create", "sqs://q.fifo", "service://Ticks/record")
    assert code == 0 and out.strip().startswith("sub_1"), out
    sub_id = out.strip()
    code, out = _run(url, "subscriptions", "list")
    assert code == 0 and "sqs://q.fifo" in out
    code, out = _run(url, "subscriptions", "delete", sub_id)
    assert code == 0, out

    request = InvokeRequest(Target("Cron", "tick"), b"", idempotency_key="x")
    first = asyncio.run_coroutine_threadsafe(engine.call(request), loop).result(30)
    code, out = _run(url, "invocations", "restart-as-new", first.invocation_id)
    assert code == 0 and out.strip().startswith("inv_") and out.strip() != first.invocation_id
    code, out = _run(url, "invocations", "purge-journal", first.invocation_id)
    assert code == 0, out
