"""Runtimes under test (the real ``restate-server`` and our ``restate-lambda dev``) and the SDK app.

Everything listens on 127.0.0.1 only, on free ports, with data in a temporary directory.

* :class:`SdkApp` serves ``tests.support.sdk_services:app`` with hypercorn over HTTP/1.1, so the
  official SDK answers discovery in request-response mode (as on Lambda).
* :class:`RestateServerRuntime` and :class:`RestateLambdaRuntime` share one interface:
  ``ingress_url``, ``admin_url``, ``register(uri)`` and ``kill9_and_restart()``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ManagedProcess, free_ports, http_ok, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"

START_TIMEOUT = float(os.environ.get("E2E_START_TIMEOUT", "60"))


# --------------------------------------------------------------------------- locating tools


def find_tool(env_var: str, name: str) -> str | None:
    """``$env_var``, else ``<repo>/.tools/node_modules/.bin/<name>``, else
    ``/work/tools/node_modules/.bin/<name>``, else ``<name>`` on PATH; ``None`` if none exists."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for candidate in (
        REPO_ROOT / ".tools" / "node_modules" / ".bin" / name,
        Path("/work/tools/node_modules/.bin") / name,
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def restate_server_bin() -> str | None:
    return find_tool("RESTATE_SERVER_BIN", "restate-server")


def restate_cli_bin() -> str | None:
    return find_tool("RESTATE_CLI", "restate")


def restate_lambda_available() -> bool:
    """Our CLI exists once ``infra/cli.py`` does."""
    return (REPO_ROOT / "infra" / "cli.py").is_file()


def restate_lambda_argv() -> list[str]:
    exe = VENV_BIN / "restate-lambda"
    if exe.exists():
        return [str(exe)]
    # Not installed as a script (the project is used from the tree): call the Typer app directly.
    return [
        sys.executable,
        "-c",
        "import sys; from infra.cli import app; sys.argv[0] = 'restate-lambda'; app()",
    ]


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------- the SDK deployment


class SdkApp:
    """``tests.support.sdk_services:app`` under hypercorn on 127.0.0.1 (HTTP/1.1 only)."""

    def __init__(
        self, workdir: Path, effects_dir: Path, app: str = "tests.support.sdk_services:app"
    ) -> None:
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.effects_dir = effects_dir
        self.process = ManagedProcess(
            "sdk-app",
            [
                sys.executable,
                "-m",
                "hypercorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--keep-alive",
                "60",
                # No TLS, so no ALPN: clients speak HTTP/1.1 unless they force h2c prior knowledge.
                # restate-server is told `use_http_11`, so the SDK sees http_version == "1.1" and
                # runs in request-response mode.
                "--log-level",
                "warning",
                app,
            ],
            workdir / "sdk-app.log",
            env=_child_env({"E2E_EFFECTS_DIR": str(effects_dir)}),
            cwd=REPO_ROOT,
        )

    def start(self) -> None:
        self.process.start()
        wait_until(
            lambda: http_ok(f"{self.url}/health"),
            START_TIMEOUT,
            "SDK app /health",
            process=self.process,
        )
        manifest = httpx.get(
            f"{self.url}/discover",
            headers={"accept": "application/vnd.restate.endpointmanifest.v4+json"},
            timeout=5,
        ).json()
        if manifest.get("protocolMode") != "REQUEST_RESPONSE":
            mode = manifest.get("protocolMode")
            raise self.process.fail(f"SDK not in request-response mode: {mode}")

    def stop(self) -> None:
        self.process.stop(grace=5)


# --------------------------------------------------------------------------- runtimes


class Runtime:
    """What a scenario needs from a runtime."""

    name: str
    #: Whether the SDK app is reached over HTTP/2 (BIDI_STREAM) rather than HTTP/1.1.
    http2: bool = False
    ingress_url: str
    admin_url: str
    process: ManagedProcess

    def start(self) -> None:
        self.process.start()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        wait_until(
            lambda: http_ok(f"{self.ingress_url}/restate/health"),
            START_TIMEOUT,
            "ingress /restate/health",
            process=self.process,
        )
        wait_until(
            lambda: http_ok(f"{self.admin_url}/health"),
            START_TIMEOUT,
            "admin /health",
            process=self.process,
        )

    def stop(self) -> None:
        self.process.stop()

    def kill9_and_restart(self) -> None:
        """``kill -9`` the runtime and start it again on the same data dir and ports."""
        self.process.kill9()
        self.start()

    def register(self, uri: str, *, use_http_11: bool = True) -> dict[str, Any]:
        """``POST /deployments`` (over HTTP/1.1, or HTTP/2 where the SDK streams) and wait
        until the ingress routes to it."""
        self.http2 = not use_http_11
        r = httpx.post(
            f"{self.admin_url}/deployments",
            json={"uri": uri, "use_http_11": use_http_11},
            timeout=30,
        )
        if r.status_code not in (200, 201):
            raise self.process.fail(f"registering {uri}: {r.status_code} {r.text}")
        body: dict[str, Any] = r.json()

        def greeter_routable() -> bool:
            resp = httpx.post(f"{self.ingress_url}/Greeter/greet", json="probe", timeout=10)
            return resp.status_code == 200

        wait_until(
            greeter_routable,
            START_TIMEOUT,
            "Greeter/greet routable after registration",
            process=self.process,
        )
        return body

    def __repr__(self) -> str:
        return f"<{self.name} ingress={self.ingress_url} admin={self.admin_url}>"


class RestateServerRuntime(Runtime):
    """The real restate-server (single node, dev profile) with everything on 127.0.0.1."""

    name = "restate-server"

    def __init__(self, binary: str, workdir: Path) -> None:
        ingress, admin, node = free_ports(3)
        self.ingress_url = f"http://127.0.0.1:{ingress}"
        self.admin_url = f"http://127.0.0.1:{admin}"
        self.base_dir = workdir / "restate-data"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = _child_env(
            {
                # ingress, admin and node (message fabric, also serves metrics) bind addresses
                "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
                "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
                "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
                "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}/",
                # TCP only: no unix sockets in the base dir (path length limits in deep tmp dirs)
                "RESTATE_LISTEN_MODE": "tcp",
                "RESTATE_DISABLE_TELEMETRY": "true",
                "RESTATE_LOG_FORMAT": "compact",
                "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
                "RESTATE_CLUSTER_NAME": "e2e",
            }
        )
        self.process = ManagedProcess(
            "restate-server",
            [binary, "--base-dir", str(self.base_dir), "--node-name", "e2e", "--no-logo"],
            workdir / "restate-server.log",
            env=env,
            cwd=workdir,
        )


class RestateLambdaRuntime(Runtime):
    """Our runtime: ``restate-lambda dev --ingress-port P1 --admin-port P2 --data-dir DIR``."""

    name = "restate-lambda"

    def __init__(self, workdir: Path) -> None:
        ingress, admin = free_ports(2)
        self.ingress_url = f"http://127.0.0.1:{ingress}"
        self.admin_url = f"http://127.0.0.1:{admin}"
        self.data_dir = workdir / "restate-lambda-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "restate-lambda",
            [
                *restate_lambda_argv(),
                "dev",
                "--ingress-port",
                str(ingress),
                "--admin-port",
                str(admin),
                "--data-dir",
                str(self.data_dir),
            ],
            workdir / "restate-lambda.log",
            env=_child_env(),
            cwd=REPO_ROOT,
        )
