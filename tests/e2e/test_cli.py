"""The official ``restate`` CLI (1.7.12) drives the runtime through its admin API."""

from __future__ import annotations

import os
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
    done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, f"restate {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


async def test_cli_services_state_invocations(
    runtime: Runtime, ingress: httpx.AsyncClient, tag: str, tmp_path: Path
) -> None:
    """``services list``, ``state get`` and ``invocations list --all`` work and show our data."""
    r = await call(ingress, f"/Counter/{tag}/add", 42)
    assert r.status_code == 200, r.text
    inv = r.headers["x-restate-id"]

    services = _cli(runtime, tmp_path, "services", "list")
    for name in ("Greeter", "Counter", "Signup", "Internal"):
        assert name in services, services
    assert "[private]  Internal" in services, services

    state = _cli(runtime, tmp_path, "state", "get", "Counter", tag)
    assert "count" in state and "42" in state, state

    invocations = _cli(runtime, tmp_path, "invocations", "list", "--all")
    assert inv in invocations, invocations
