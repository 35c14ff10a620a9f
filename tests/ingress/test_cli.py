"""The official ``restate`` CLI against the admin app served by uvicorn."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity
from tests.ingress.fakes import DEPLOYMENT_ID, FakeEngine

_DEFAULT_CLI = "/work/tools/node_modules/.bin/restate"


def _cli_path() -> str | None:
    for candidate in (os.environ.get("RESTATE_CLI"), _DEFAULT_CLI):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("restate")


CLI = _cli_path()
pytestmark = pytest.mark.skipif(
    CLI is None,
    reason=f"restate CLI not found (set RESTATE_CLI, or install it at {_DEFAULT_CLI} or on PATH)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TOKEN = "cli-test-token"


def _serve(security: AdminSecurity) -> Iterator[str]:
    """The admin app with a fake engine, served by uvicorn in a thread, as ``dev`` does."""
    port = _free_port()
    config = uvicorn.Config(
        create_admin_app(FakeEngine(), security=security),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """The admin app without a token (loopback Host and Origin checks on)."""
    yield from _serve(AdminSecurity.for_bind("127.0.0.1", None))


@pytest.fixture(scope="module")
def token_admin_url() -> Iterator[str]:
    """The admin app requiring a bearer token."""
    yield from _serve(AdminSecurity.for_bind("127.0.0.1", TOKEN))


_CLI_ENV_DROPPED = frozenset(
    {"RESTATE_ENVIRONMENT", "RESTATE_AUTH_TOKEN", "RESTATE_HOST", "RESTATE_HOST_SCHEME"}
)


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty CLI config directory."""
    return str(tmp_path_factory.mktemp("restate-cli"))


def run_cli(
    admin_url: str, config_home: str, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI non-interactively against ``admin_url`` (sending ``token`` if given)."""
    assert CLI is not None
    # keep the CLI away from the developer's own environment, config and credentials
    env = {k: v for k, v in os.environ.items() if k not in _CLI_ENV_DROPPED}
    if token is not None:
        env["RESTATE_AUTH_TOKEN"] = token
    env.update(
        {
            "RESTATE_ADMIN_URL": admin_url,
            "RESTATE_CLI_CONFIG_HOME": config_home,
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
    )
    return subprocess.run(
        [CLI, "--yes", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_services_list(admin_url: str, cli_home: str) -> None:
    result = run_cli(admin_url, cli_home, "services", "list")
    assert result.returncode == 0, result.stderr
    for name in ("Greeter", "Counter", "Wf"):
        assert name in result.stdout


def test_deployments_list(admin_url: str, cli_home: str) -> None:
    result = run_cli(admin_url, cli_home, "deployments", "list")
    assert result.returncode == 0, result.stderr
    assert DEPLOYMENT_ID in result.stdout
    assert "Greeter" in result.stdout


def test_describe_commands(admin_url: str, cli_home: str) -> None:
    result = run_cli(admin_url, cli_home, "services", "describe", "Greeter")
    assert result.returncode == 0, result.stderr
    assert "greet" in result.stdout
    result = run_cli(admin_url, cli_home, "deployments", "describe", DEPLOYMENT_ID)
    assert result.returncode == 0, result.stderr
    assert "Counter" in result.stdout


def test_kv_get(admin_url: str, cli_home: str) -> None:
    result = run_cli(admin_url, cli_home, "kv", "get", "Counter", "k1")
    assert result.returncode == 0, result.stderr
    assert "count" in result.stdout
    assert "42" in result.stdout


def test_token_from_restate_auth_token(token_admin_url: str, cli_home: str) -> None:
    """The official CLI sends ``RESTATE_AUTH_TOKEN`` as a bearer token: it keeps working."""
    result = run_cli(token_admin_url, cli_home, "services", "list", token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "Greeter" in result.stdout
    result = run_cli(token_admin_url, cli_home, "kv", "get", "Counter", "k1", token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout
    result = run_cli(
        token_admin_url, cli_home, "deployments", "register", "http://127.0.0.1:9/", token=TOKEN
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_token_refused(token_admin_url: str, cli_home: str) -> None:
    for token in (None, "wrong"):
        result = run_cli(token_admin_url, cli_home, "services", "list", token=token)
        assert result.returncode != 0, result.stdout
        assert "Greeter" not in result.stdout
