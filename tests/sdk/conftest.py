"""Runtimes for the SDK scenarios: restate-server (request-response and bidi) and our runtime.

The deployment is ``tests/support/sdk_services.py`` ported by changing only its imports to
``restate_lambda``, plus :mod:`tests.sdk.extra_services`.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.effects import Effects
from tests.support.processes import ManagedProcess, free_ports, http_ok, wait_until
from tests.support.runtimes import REPO_ROOT, RestateServerRuntime, restate_server_bin

SOURCE = REPO_ROOT / "tests" / "support" / "sdk_services.py"


def port_module(source: str) -> str:
    """restate-sdk module text -> restate_lambda module text (imports only)."""
    return source.replace("import restate\n", "import restate_lambda as restate\n").replace(
        "from restate import", "from restate_lambda import"
    )


class Deployment:
    """The ported app served by hypercorn (HTTP/1.1 or h2c)."""

    def __init__(self, workdir: Path, module_dir: Path, effects: Path, http2: bool) -> None:
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "sdk-deployment",
            [
                sys.executable,
                "-m",
                "hypercorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "combined:app",
            ],
            workdir / f"deployment-{'h2' if http2 else 'h1'}.log",
            env={
                **os.environ,
                "E2E_EFFECTS_DIR": str(effects),
                "PYTHONPATH": f"{module_dir}{os.pathsep}{REPO_ROOT}",
            },
            cwd=module_dir,
        )

    def start(self) -> None:
        self.process.start()
        wait_until(
            lambda: http_ok(f"{self.url}/health"), 30, "deployment /health", process=self.process
        )


class SdkRuntime:
    """A runtime with the ported deployment registered."""

    def __init__(self, name: str, ingress_url: str, admin_url: str, procs: list[ManagedProcess]):
        self.name = name
        self.ingress_url = ingress_url
        self.admin_url = admin_url
        self.procs = procs

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop(grace=5)


@pytest.fixture(scope="session")
def sdk_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdk")
    (root / "effects").mkdir()
    mod = root / "module"
    mod.mkdir()
    (mod / "ported_services.py").write_text(port_module(SOURCE.read_text()))
    (mod / "combined.py").write_text(
        '"""Ported restate-sdk services plus restate_lambda extras."""\n'
        "import restate_lambda as restate\n"
        "from ported_services import SERVICES\n"
        "from tests.sdk.extra_services import EXTRA\n"
        "app = restate.app([*SERVICES, *EXTRA])\n"
    )
    return root


@pytest.fixture(scope="session")
def sdk_effects(sdk_workdir: Path) -> Effects:
    return Effects(sdk_workdir / "effects")


def _wait_routable(ingress: str, proc: ManagedProcess) -> None:
    def ok() -> bool:
        return httpx.post(f"{ingress}/Greeter/greet", json="probe", timeout=10).status_code == 200

    wait_until(ok, 60, "Greeter/greet routable", process=proc)


@pytest.fixture(
    scope="session",
    params=["restate-lambda", "lambda-rr", "lambda-bidi", "server-rr", "server-bidi"],
)
def sdk_runtime(request: pytest.FixtureRequest, sdk_workdir: Path) -> Iterator[SdkRuntime]:
    """restate-lambda dev with the app in process, or over HTTP/1.1 (its steps checkpointed at
    the dev server's ingress) or h2c (bidirectional); restate-server with the app over HTTP/1.1
    or h2c."""
    work = sdk_workdir / request.param
    work.mkdir()
    effects = sdk_workdir / "effects"
    if request.param == "restate-lambda":
        ingress, admin = free_ports(2)
        proc = ManagedProcess(
            "restate-lambda",
            [
                str(REPO_ROOT / ".venv" / "bin" / "restate-lambda"),
                "dev",
                str(sdk_workdir / "module" / "combined.py"),
                "--ingress-port",
                str(ingress),
                "--admin-port",
                str(admin),
                "--data-dir",
                str(work / "data"),
                "--log-level",
                "WARNING",
            ],
            work / "restate-lambda.log",
            env={
                **os.environ,
                "E2E_EFFECTS_DIR": str(effects),
                "PYTHONPATH": f"{sdk_workdir / 'module'}{os.pathsep}{REPO_ROOT}",
            },
            cwd=REPO_ROOT,
        )
        proc.start()
        rt = SdkRuntime(
            request.param, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}", [proc]
        )
        try:
            _wait_routable(rt.ingress_url, proc)
            yield rt
        finally:
            rt.stop()
        return
    if request.param.startswith("lambda-"):
        yield from _lambda_with_deployment(request.param, work, sdk_workdir, effects)
        return
    binary = restate_server_bin()
    if binary is None:
        pytest.skip("restate-server not found (set RESTATE_SERVER_BIN or install the npm package)")
    http2 = request.param == "server-bidi"
    dep = Deployment(work, sdk_workdir / "module", effects, http2)
    server = RestateServerRuntime(binary, work)
    rt = SdkRuntime(
        request.param, server.ingress_url, server.admin_url, [dep.process, server.process]
    )
    try:
        dep.start()
        server.start()
        body = {"uri": dep.url} if http2 else {"uri": dep.url, "use_http_11": True}
        r = httpx.post(f"{server.admin_url}/deployments", json=body, timeout=30)
        assert r.status_code in (200, 201), r.text
        _wait_routable(server.ingress_url, server.process)
        yield rt
    finally:
        rt.stop()


def _lambda_with_deployment(
    name: str, work: Path, sdk_workdir: Path, effects: Path
) -> Iterator[SdkRuntime]:
    """restate-lambda dev and the app served by hypercorn, registered over HTTP/1.1 or h2c."""
    http2 = name == "lambda-bidi"
    dep = Deployment(work, sdk_workdir / "module", effects, http2)
    ingress, admin = free_ports(2)
    proc = ManagedProcess(
        "restate-lambda",
        [
            str(REPO_ROOT / ".venv" / "bin" / "restate-lambda"),
            "dev",
            "--ingress-port",
            str(ingress),
            "--admin-port",
            str(admin),
            "--data-dir",
            str(work / "data"),
            "--log-level",
            "WARNING",
        ],
        work / "restate-lambda.log",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    )
    rt = SdkRuntime(
        name, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}", [dep.process, proc]
    )
    try:
        dep.start()
        proc.start()
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{admin}/health"), 60, "admin /health", process=proc
        )
        body = {"uri": dep.url} if http2 else {"uri": dep.url, "use_http_11": True}
        r = httpx.post(f"http://127.0.0.1:{admin}/deployments", json=body, timeout=30)
        assert r.status_code in (200, 201), r.text
        _wait_routable(rt.ingress_url, proc)
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def tag() -> str:
    """A fresh tag for effects and keys."""
    return uuid.uuid4().hex
