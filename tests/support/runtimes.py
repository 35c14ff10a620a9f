"""Runtimes under test (the real ``restate-server`` and our ``restate-lambda dev``) and the SDK app.

Everything listens on 127.0.0.1 only, on free ports, with data in a temporary directory.

* :class:`SdkApp` serves ``tests.support.sdk_services:app`` (the official Python SDK) with
  hypercorn, which speaks HTTP/1.1 and h2c with prior knowledge on one port: registered with
  ``use_http_11`` the SDK runs in request-response mode (as on Lambda), without it in
  BIDI_STREAM mode.
* :class:`TsSdkApp` serves ``tests/support/ts_services.cjs`` (the same handlers on the official
  TypeScript SDK) with ``restate.serve()``: node:http2, h2c only, BIDI_STREAM.
* :class:`RestateServerRuntime` and :class:`RestateLambdaRuntime` share one interface:
  ``ingress_url``, ``admin_url``, ``register(uri)`` and ``kill9_and_restart()``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
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


#: The TypeScript SDK calls ``Promise.withResolvers`` (ES2024): Node.js 22 or newer.
NODE_MIN_MAJOR = 22


TS_SDK_PACKAGE = "@restatedev/restate-sdk"


def ts_sdk_node_modules() -> Path | None:
    """The ``node_modules`` folder holding the official TypeScript SDK:
    ``$RESTATE_SDK_TS_NODE_MODULES``, else ``<repo>/.tools/ts-sdk/node_modules``, else
    ``/work/tools/ts-sdk/node_modules`` (where ``scripts/install_tools.sh`` puts it, with Node.js
    22 beside it); ``None`` if none holds it."""
    explicit = os.environ.get("RESTATE_SDK_TS_NODE_MODULES")
    candidates = (
        [Path(explicit)]
        if explicit
        else [
            REPO_ROOT / ".tools" / "ts-sdk" / "node_modules",
            Path("/work/tools/ts-sdk/node_modules"),
        ]
    )
    for candidate in candidates:
        if (candidate / TS_SDK_PACKAGE / "package.json").is_file():
            return candidate
    return None


def node_bin() -> str | None:
    """The Node.js that serves the TypeScript SDK app: ``$NODE_BIN``, else the one
    ``scripts/install_tools.sh`` installs beside the SDK (``node_modules/node-linux-<arch>``,
    called by absolute path: it is on no PATH, so it never shadows the system's ``node``), else
    ``node`` on PATH; ``None`` if none exists."""
    explicit = os.environ.get("NODE_BIN")
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    node_modules = ts_sdk_node_modules()
    if node_modules is not None:
        for candidate in sorted(node_modules.glob("node-linux-*/bin/node")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("node")


def node_major(binary: str) -> int | None:
    """The major version of the ``node`` at ``binary``, or ``None`` if it does not run."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        return int(out.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


@functools.cache
def ts_sdk_missing() -> str | None:
    """Why the TypeScript SDK app cannot run here, or ``None`` when it can."""
    if ts_sdk_node_modules() is None:
        return (
            f"{TS_SDK_PACKAGE} not installed: run scripts/install_tools.sh "
            "or set RESTATE_SDK_TS_NODE_MODULES"
        )
    node = node_bin()
    if node is None:
        return "node not found: run scripts/install_tools.sh, or set NODE_BIN"
    major = node_major(node)
    if major is None or major < NODE_MIN_MAJOR:
        return (
            f"{node} is Node.js {major}: the TypeScript SDK needs {NODE_MIN_MAJOR} or newer "
            "(run scripts/install_tools.sh, or set NODE_BIN)"
        )
    return None


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
    """``tests.support.sdk_services:app`` under hypercorn on 127.0.0.1 (HTTP/1.1, and h2c with
    prior knowledge for clients that start with the HTTP/2 preface)."""

    sdk = "python"

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


MANIFEST_V4 = "application/vnd.restate.endpointmanifest.v4+json"


def discover_h2c(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET {url}/discover`` over HTTP/2 cleartext with prior knowledge (what an h2c-only
    endpoint such as ``restate.serve()`` needs): the manifest, after checking the answer came
    over HTTP/2 with status 200."""
    with httpx.Client(http1=False, http2=True, timeout=timeout) as client:
        r = client.get(f"{url}/discover", headers={"accept": MANIFEST_V4})
    if r.status_code != 200 or r.http_version != "HTTP/2":
        raise httpx.HTTPError(f"/discover: {r.status_code} over {r.http_version}")
    manifest: dict[str, Any] = r.json()
    return manifest


class TsSdkApp:
    """``tests/support/ts_services.cjs`` under ``restate.serve()`` (node:http2, h2c only).

    ``restate.serve`` takes only a port and listens on every interface (there is no host option);
    the URL handed to runtimes is the loopback one. There is no ``/health`` on the TypeScript
    SDK: readiness is a ``/discover`` over h2c that answers ``BIDI_STREAM``.
    """

    sdk = "typescript"
    script = REPO_ROOT / "tests" / "support" / "ts_services.cjs"

    def __init__(self, workdir: Path, effects_dir: Path) -> None:
        node, node_modules = node_bin(), ts_sdk_node_modules()
        if node is None or node_modules is None:
            raise RuntimeError(ts_sdk_missing())
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.effects_dir = effects_dir
        self.process = ManagedProcess(
            "ts-sdk-app",
            [node, str(self.script)],
            workdir / "ts-sdk-app.log",
            env=_child_env(
                {
                    "E2E_EFFECTS_DIR": str(effects_dir),
                    "PORT": str(self.port),
                    "NODE_PATH": str(node_modules),
                }
            ),
            cwd=REPO_ROOT,
        )

    def start(self) -> None:
        self.process.start()
        wait_until(
            lambda: bool(discover_h2c(self.url)),
            START_TIMEOUT,
            "TypeScript SDK app /discover over h2c",
            process=self.process,
        )
        mode = discover_h2c(self.url).get("protocolMode")
        if mode != "BIDI_STREAM":
            raise self.process.fail(f"TypeScript SDK not in BIDI_STREAM mode: {mode}")

    def stop(self) -> None:
        self.process.stop(grace=5)


# --------------------------------------------------------------------------- runtimes


class Runtime:
    """What a scenario needs from a runtime."""

    name: str
    #: Whether the SDK app is reached over HTTP/2 (BIDI_STREAM) rather than HTTP/1.1.
    http2: bool = False
    #: Which official SDK serves the handlers: ``"python"`` or ``"typescript"``.
    sdk: str = "python"
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
