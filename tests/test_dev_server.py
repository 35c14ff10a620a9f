"""``restate-lambda dev``: every mistake is one line naming cause and place; it starts only when
it can serve, stops on the first signal within its deadline and at once on the second."""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.dev_server import AppLoadError, load_app
from tests.support.dev import ROOT, DevServer, cli

runner = CliRunner()

FAILING = """
import restate_lambda as restate

svc = restate.Service("Buggy")


@svc.handler()
async def boom(ctx: restate.Context, x: int) -> int:
    raise RuntimeError("always")


app = restate.app([svc])
"""

LOAD_ERRORS = {
    "syntax": ("import restate_lambda as restate\nsvc = restate.Service('S'\n", r"mod.py:2: SyntaxError: '\(' was never closed"),  # noqa: E501
    "typo": ("import restate_lambda as restate\n\nsvc = restate.Servise('S')\n", r"mod.py:3: AttributeError: module 'restate_lambda' has no attribute 'Servise'"),  # noqa: E501
    "import": ("import restate_lambda\nimport no_such_module_here\n", r"mod.py:2: ModuleNotFoundError: No module named 'no_such_module_here'"),  # noqa: E501
    "raises": ("def setup():\n    raise KeyError('REGION')\n\nsetup()\n", r"mod.py:2: KeyError: 'REGION'"),  # noqa: E501
    "no app": ("x = 1\n", r"mod.py defines no ASGI app: name it 'app'"),
    "plain def": (
        "import restate\nsvc = restate.Service('S')\n\n@svc.handler()\ndef greet(ctx, name: str) -> str:\n    return name\n\napp = restate.app([svc])\n",  # noqa: E501
        r"mod.py:5: handler S.greet is a plain `def`: Restate handlers must be `async def`",
    ),
}  # fmt: skip


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_load_errors_name_file_and_line(tmp_path: Path, case: str) -> None:
    """A module that cannot be served is reported in one line: file:line: what."""
    source, expected = LOAD_ERRORS[case]
    mod = write(tmp_path / f"mod_{case.replace(' ', '_')}.py", source)
    with pytest.raises(AppLoadError) as err:
        load_app(mod)
    message = str(err.value)
    assert "\n" not in message
    import re

    assert re.search(expected.replace("mod.py", f"mod_{case.replace(' ', '_')}.py"), message), (
        message
    )


def test_load_error_through_the_cli_is_one_line(tmp_path: Path) -> None:
    """No traceback: exit 2 and one line on stderr."""
    mod = write(tmp_path / "broken.py", LOAD_ERRORS["syntax"][0])
    result = runner.invoke(app, ["dev", mod, "--data-dir", str(tmp_path / "d")])
    assert 2 == result.exit_code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert 1 == len(lines), result.output
    assert "broken.py:2: SyntaxError" in lines[0] and "Traceback" not in result.output


def test_busy_port_is_one_line(tmp_path: Path) -> None:
    """A taken port fails before anything is announced, in one line naming port and option."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app,
            ["dev", "--data-dir", str(tmp_path), "--admin-port", str(port), "--ingress-port", "0"],
        )
    assert 2 == result.exit_code
    assert f"error: port {port} on 127.0.0.1 is already in use" in result.output
    assert "--admin-port" in result.output and "(ready)" not in result.output
    assert 1 == len(result.output.strip().splitlines()), result.output


def test_version() -> None:
    """--version prints the installed version."""
    result = runner.invoke(app, ["--version"])
    assert 0 == result.exit_code
    assert result.output.startswith("restate-lambda ")


def test_open_admin_api_refused(tmp_path: Path) -> None:
    """--host on a non-loopback address without an admin token is refused in one line."""
    result = runner.invoke(app, ["dev", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert 2 == result.exit_code
    assert "--admin-token" in result.output and "Traceback" not in result.output


def test_ready_means_listening(tmp_path: Path) -> None:
    """The ready line comes after both ports listen: the first request after it succeeds."""
    server = DevServer(tmp_path / "d", str(ROOT / "examples" / "greeter.py"))
    try:
        server.wait_for("(ready)")
        assert 200 == httpx.get(f"{server.ingress}/restate/health").status_code
        assert 200 == httpx.get(f"{server.admin}/health").status_code
    finally:
        server.stop()


def _blocking_call(url: str, out: dict[str, object]) -> None:
    try:
        response = httpx.post(url, json=1, timeout=60)
        out["status"] = response.status_code
        out["body"] = response.text
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_within_its_deadline_while_a_call_waits(tmp_path: Path, sig: int) -> None:
    """A blocking call whose invocation keeps retrying does not hold the server: the first
    signal stops it within --shutdown-timeout, and the caller gets a 503 saying why."""
    mod = write(tmp_path / "buggy.py", FAILING)
    server = DevServer(tmp_path / "d", mod, extra=("--shutdown-timeout", "1"))
    try:
        server.wait_for("(ready)")
        answer: dict[str, object] = {}
        caller = threading.Thread(
            target=_blocking_call, args=(f"{server.ingress}/Buggy/boom", answer)
        )
        caller.start()
        server.wait_for("attempt failed")
        started = time.monotonic()
        server.signal(sig)
        assert 0 == server.wait(15)
        assert time.monotonic() - started < 6
        caller.join(10)
        assert 503 == answer.get("status"), answer
        assert "shutting down" in json.loads(str(answer["body"]))["message"]
        # The one traceback is the handler's failure, logged once; the shutdown adds none.
        assert server.output.count("Traceback") <= 1, server.output
        assert "Traceback" not in server.output or "buggy.py" in server.output, server.output
    finally:
        server.stop()


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    """With a long shutdown deadline, a second Ctrl-C does not wait for it."""
    mod = write(tmp_path / "buggy.py", FAILING)
    server = DevServer(tmp_path / "d", mod, extra=("--shutdown-timeout", "60"))
    try:
        server.wait_for("(ready)")
        caller = threading.Thread(target=_blocking_call, args=(f"{server.ingress}/Buggy/boom", {}))
        caller.daemon = True
        caller.start()
        server.wait_for("attempt failed")
        server.signal(signal.SIGINT)
        server.wait_for("press Ctrl-C again")
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert 130 == server.wait(10)
        assert time.monotonic() - started < 3
        assert "exiting at once (second signal)" in server.output
    finally:
        server.stop()


def test_stale_in_process_deployment_is_reported_and_removable(tmp_path: Path) -> None:
    """A module served by an earlier run and not now: a warning naming the deployment and how to
    remove it; calls to it are paused with that reason instead of retried forever."""
    data = tmp_path / "d"
    mod = write(tmp_path / "buggy.py", FAILING)
    first = DevServer(data, mod)
    try:
        first.wait_for("(ready)")
    finally:
        first.stop()
    server = DevServer(data, str(ROOT / "examples" / "greeter.py"))
    try:
        out = server.wait_for("(ready)")
        assert "(asgi://buggy: Buggy) was served in process by an earlier run" in out, out
        dep = out.split("restate-lambda deployments remove ")[1].split("`")[0]
        sent = httpx.post(f"{server.ingress}/Buggy/boom/send", json=1).json()["invocationId"]
        server.wait_for(f"paused invocation {sent}")
        assert "its deployment is not served by this dev server" in server.output
        listed = json.loads(
            cli("invocations", "list", "--json", "--admin-url", server.admin).stdout
        )
        assert ["paused"] == [r["status"] for r in listed if r["id"] == sent]
        removed = cli("deployments", "remove", dep, "--admin-url", server.admin)
        assert 0 == removed.returncode and f"removed {dep}" in removed.stdout
        again = cli("deployments", "remove", dep, "--admin-url", server.admin)
        assert 3 == again.returncode and f"no deployment {dep}" in again.stderr
    finally:
        server.stop()


def test_official_sdk_output_that_cannot_be_serialized_is_paused(tmp_path: Path) -> None:
    """The official SDK's serialization failure is named with handler and paused at once."""
    mod = write(
        tmp_path / "sets.py",
        """
        import restate

        svc = restate.Service("Sets")


        @svc.handler()
        async def tags(ctx: restate.Context) -> dict:
            return {"tags": {"a", "b"}}


        app = restate.app([svc])
        """,
    )
    server = DevServer(tmp_path / "d", mod)
    try:
        server.wait_for("(ready)")
        sent = httpx.post(f"{server.ingress}/Sets/tags/send").json()["invocationId"]
        out = server.wait_for(f"paused invocation {sent}")
        assert "Sets/tags: the return value cannot be serialized: TypeError" in out
        assert "attempt failed (2)" not in out
    finally:
        server.stop()


def test_reload_serves_the_changed_module(tmp_path: Path) -> None:
    """--reload restarts the server when a served module changes; a broken save is reported in
    one line and the next good one is served again."""
    mod = tmp_path / "hello.py"
    source = """
        import restate_lambda as restate

        svc = restate.Service("Hello")


        @svc.handler()
        async def hi(ctx: restate.Context) -> str:
            return "{word}"


        app = restate.app([svc])
        """
    write(mod, source.format(word="one"))
    server = DevServer(tmp_path / "d", str(mod), extra=("--reload",))
    try:
        server.wait_for("(ready)")
        assert "one" == httpx.post(f"{server.ingress}/Hello/hi").json()
        mark = len(server.output)
        write(mod, source.format(word="two").replace("restate.app(", "restate.app(("))
        server.wait_for("SyntaxError", after=mark)
        assert "hello.py:" in server.output[mark:]
        mark = len(server.output)
        write(mod, source.format(word="two"))
        server.wait_for("(ready)", after=mark)
        assert "two" == httpx.post(f"{server.ingress}/Hello/hi").json()
    finally:
        server.stop()
