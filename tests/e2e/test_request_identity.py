"""Request identity across implementations, over HTTP/1.1 (hypercorn) and real processes.

* The official restate-sdk with ``identity_keys`` accepts our runtime (registered with it and
  called through our ingress) and rejects unsigned or wrongly signed callers with 401.
* Our SDK accepts restate-server 1.7.12 signing with a key file we made
  (``worker.invoker.request-identity-private-key-pem-file``, env
  ``RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE``): one key file serves both runtimes.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.testing import test_environment as make_environment
from invoker.api import BadRequestError
from invoker.request_identity import RequestSigner, generate_pem
from restate_lambda.clock import SystemClock
from tests.support.processes import ManagedProcess, free_ports, http_ok, wait_until
from tests.support.runtimes import (
    REPO_ROOT,
    START_TIMEOUT,
    RestateLambdaRuntime,
    RestateServerRuntime,
    _child_env,
    restate_lambda_argv,
    restate_server_bin,
)

PEM = generate_pem()
PUBLIC_KEY = RequestSigner.from_pem(PEM).public_key
MANIFEST = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}


def serve_app(workdir: Path, sdk: str, keys: str = PUBLIC_KEY) -> tuple[ManagedProcess, str]:
    """Start ``tests.support.identity_sdk_app`` with ``sdk``, requiring ``keys`` (by default
    ``PEM``'s public key)."""
    (port,) = free_ports(1)
    process = ManagedProcess(
        "identity-sdk-app",
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "tests.support.identity_sdk_app:app",
        ],
        workdir / f"app-{sdk}.log",
        env=_child_env({"E2E_IDENTITY_KEYS": keys, "E2E_IDENTITY_SDK": sdk}),
        cwd=REPO_ROOT,
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/health"), START_TIMEOUT, "app /health", process=process)
    except BaseException:
        process.stop(grace=5)
        raise
    return process, url


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The official SDK's app; it accepts only requests signed by ``PEM``."""
    process, url = serve_app(tmp_path_factory.mktemp("identity"), "restate")
    try:
        yield url
    finally:
        process.stop(grace=5)


def test_unsigned_requests_are_rejected_with_401(signed_app: str) -> None:
    assert httpx.get(f"{signed_app}/discover", headers=MANIFEST).status_code == 401
    r = httpx.post(
        f"{signed_app}/invoke/Greeter/greet",
        headers={"content-type": "application/vnd.restate.invocation.v5"},
        content=b"",
    )
    assert r.status_code == 401
    stranger = RequestSigner.from_pem(generate_pem())
    r = httpx.get(f"{signed_app}/discover", headers={**MANIFEST, **stranger.headers("/discover")})
    assert r.status_code == 401
    # the right key, the wrong path: the token is bound to the path it was made for
    r = httpx.get(
        f"{signed_app}/discover",
        headers={**MANIFEST, **RequestSigner.from_pem(PEM).headers("/invoke/Greeter/greet")},
    )
    assert r.status_code == 401


async def test_our_runtime_without_the_key_cannot_register(signed_app: str) -> None:
    async with make_environment() as env:
        with pytest.raises(BadRequestError, match="401"):
            await env.engine.register_deployment(signed_app, use_http_11=True)


async def test_our_runtime_signs_and_the_official_sdk_accepts(signed_app: str) -> None:
    async with make_environment() as env:
        # The SDK runs in another process on wall time: the tokens must carry wall time too
        # (the environment's manual clock runs ahead of it).
        env.engine.transports.signer = RequestSigner.from_pem(PEM, SystemClock())
        r = await env.admin.post("/deployments", json={"uri": signed_app, "use_http_11": True})
        assert r.status_code in (200, 201), r.text
        for name in ("Ada", "Grace"):
            r = await env.ingress.post("/Greeter/greet", json=name)
            assert r.status_code == 200, r.text
            assert r.json() == f"Hello, {name}!"


@pytest.mark.server
def test_our_sdk_accepts_restate_server_signing_with_our_key_file(tmp_path: Path) -> None:
    binary = restate_server_bin()
    if binary is None:
        pytest.skip("restate-server is not installed")
    key_file = tmp_path / "identity.pem"
    key_file.write_bytes(PEM)
    app_process, app_url = serve_app(tmp_path, "restate_lambda")
    server = RestateServerRuntime(binary, tmp_path)
    assert server.process.env is not None
    server.process.env["RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"] = str(key_file)
    try:
        server.start()
        server.register(app_url)  # discovery, then calls until Greeter/greet answers 200
        r = httpx.post(f"{server.ingress_url}/Greeter/greet", json="Restate", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == "Hello, Restate!"
        assert PUBLIC_KEY in server.process.log_tail(200_000)  # "Loaded request identity key"
    finally:
        server.stop()
        app_process.stop(grace=5)


@pytest.mark.server
def test_restate_server_without_a_key_is_refused_by_our_sdk(tmp_path: Path) -> None:
    binary = restate_server_bin()
    if binary is None:
        pytest.skip("restate-server is not installed")
    app_process, app_url = serve_app(tmp_path, "restate_lambda")
    server = RestateServerRuntime(binary, tmp_path)
    try:
        server.start()
        r = httpx.post(
            f"{server.admin_url}/deployments",
            json={"uri": app_url, "use_http_11": True},
            timeout=30,
        )
        assert r.status_code >= 400 and "401" in r.text, r.text
    finally:
        server.stop()
        app_process.stop(grace=5)


_DEV_SIGNS = "dev_signer" in (REPO_ROOT / "infra" / "dev_server.py").read_text()


@pytest.mark.skipif(not _DEV_SIGNS, reason="infra/dev_server.py does not wire dev_signer yet")
def test_restate_lambda_dev_signs_with_its_data_dir_key(tmp_path: Path) -> None:
    """`restate-lambda dev` makes DATA_DIR/identity.pem, `identity show` prints its public key,
    and the official SDK requiring that key accepts the dev server's calls."""
    runtime = RestateLambdaRuntime(tmp_path)
    runtime.start()
    app_process = None
    try:
        key_file = runtime.data_dir / "identity.pem"
        assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        shown = subprocess.run(
            [*restate_lambda_argv(), "identity", "show", "--data-dir", str(runtime.data_dir)],
            capture_output=True,
            text=True,
            env=_child_env(),
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        public_key = shown.stdout.strip()
        assert public_key == RequestSigner.from_pem(key_file.read_bytes()).public_key
        app_process, app_url = serve_app(tmp_path, "restate", keys=public_key)
        runtime.register(app_url)  # discovery, then calls until Greeter/greet answers 200
        r = httpx.post(f"{runtime.ingress_url}/Greeter/greet", json="Dev", timeout=30)
        assert r.status_code == 200 and r.json() == "Hello, Dev!", r.text
        # a restart keeps the key: the deployment still accepts the runtime
        runtime.kill9_and_restart()
        r = httpx.post(f"{runtime.ingress_url}/Greeter/greet", json="Again", timeout=30)
        assert r.status_code == 200 and r.json() == "Hello, Again!", r.text
    finally:
        runtime.stop()
        if app_process is not None:
            app_process.stop(grace=5)
