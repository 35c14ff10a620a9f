"""The official ``restate`` CLI (1.7.12) drives the runtime through its admin API."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import call
from tests.support.runtimes import Runtime, restate_cli_bin


def _cli(runtime: Runtime, config_home: Path, *args: str) -> str:
    binary = restate_cli_bin()
    if binary is None:
        pytest.skip("restate CLI not found: run scripts/install_tools.sh or set RESTATE_CLI")
    env = {
        **os.environ,
        "RESTATE_ADMIN_URL": runtime.admin_url,
        "RESTATE_INGRESS_URL": runtime.ingress_url,
        "RESTATE_CLI_CONFIG_HOME": str(config_home),  # never the user's config
        "CI": "1",  # no prompts
    }
    done = subprocess.run(
        [binary, *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"restate {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


async def test_cli_services_and_state(
    runtime: Runtime, ingress: httpx.AsyncClient, tag: str, tmp_path: Path
) -> None:
    """``services list``, ``deployments list`` and ``state get`` work and show our data."""
    r = await call(ingress, f"/Counter/{tag}/add", 42)
    assert r.status_code == 200, r.text
    inv = r.headers["x-restate-id"]

    services = _cli(runtime, tmp_path, "services", "list")
    for name in ("Greeter", "Counter", "Signup", "Internal"):
        assert name in services, services
    assert "[private]  Internal" in services, services

    deployments = _cli(runtime, tmp_path, "deployments", "list")
    assert "dp_" in deployments, deployments

    state = _cli(runtime, tmp_path, "state", "get", "Counter", tag)
    assert "count" in state and "42" in state, state
    assert inv.startswith("inv_1")


async def test_cli_invocations_list(
    runtime: Runtime, ingress: httpx.AsyncClient, tag: str, tmp_path: Path
) -> None:
    """``invocations list --all`` shows a finished invocation."""
    r = await call(ingress, "/Greeter/greet", tag)
    assert r.status_code == 200, r.text
    invocations = _cli(runtime, tmp_path, "invocations", "list", "--all")
    assert r.headers["x-restate-id"] in invocations, invocations


async def test_restate_lambda_cli(runtime: Runtime, ingress: httpx.AsyncClient, tag: str) -> None:
    """Our own CLI lists deployments, lists and describes invocations and reads state."""
    if runtime.name != "restate-lambda":
        pytest.skip("the restate-lambda CLI talks to restate-lambda's admin extensions")
    import sys

    r = await call(ingress, f"/Counter/{tag}/add", 7)
    assert r.status_code == 200, r.text
    inv = r.headers["x-restate-id"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infra.cli", *args, "--admin-url", runtime.admin_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def cli(*args: str) -> str:
        done = run(*args)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    assert "Counter" in cli("deployments", "list")
    listed = cli("invocations", "list", "--all")
    assert inv in listed and "completed" in listed, listed
    described = cli("invocations", "describe", inv)
    assert "completed" in described and "Output" in described, described
    as_json = json.loads(cli("invocations", "describe", inv, "--json"))
    assert "completed" == as_json["status"]
    assert re.search(r"count\s+7", cli("kv", "get", "Counter", tag))
    assert {"count": 7} == json.loads(cli("kv", "get", "Counter", tag, "--json"))
