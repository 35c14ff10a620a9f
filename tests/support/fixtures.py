"""Pytest fixtures for end-to-end tests against a running runtime.

``runtime`` is parametrised over the real ``restate-server`` (marked ``server``) and our
``restate-lambda dev`` (skipped, with a reason, until ``infra/cli.py`` exists), each with the
handlers of an official SDK registered: the Python SDK over HTTP/1.1 and over h2c, the
TypeScript SDK (``restate.serve()``, h2c only) over h2c. Each is started once per session, so
tests group by runtime; the two SDK apps start on first use.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.effects import Effects
from tests.support.runtimes import (
    RestateLambdaRuntime,
    RestateServerRuntime,
    Runtime,
    SdkApp,
    TsSdkApp,
    restate_lambda_available,
    restate_server_bin,
    ts_sdk_missing,
)

_LAMBDA_MARK = pytest.mark.skipif(
    not restate_lambda_available(), reason="restate-lambda dev not available"
)
_TS_MISSING = ts_sdk_missing()
_TS_MARK = pytest.mark.skipif(_TS_MISSING is not None, reason=_TS_MISSING or "")
#: (runtime, use_http_11, SDK app fixture). Each runtime with the Python SDK app registered over
#: HTTP/1.1 (request-response, as on Lambda) and over HTTP/2 (h2c, the SDK in BIDI_STREAM mode:
#: restate-server's default), and with the TypeScript SDK app over h2c (all it speaks).
RUNTIME_PARAMS = [
    pytest.param(
        ("restate-server", True, "sdk_app"), id="restate-server", marks=pytest.mark.server
    ),
    pytest.param(
        ("restate-server", False, "sdk_app"), id="restate-server-h2", marks=pytest.mark.server
    ),
    pytest.param(
        ("restate-server", False, "ts_app"),
        id="restate-server-ts",
        marks=[pytest.mark.server, _TS_MARK],
    ),
    pytest.param(("restate-lambda", True, "sdk_app"), id="restate-lambda", marks=_LAMBDA_MARK),
    pytest.param(("restate-lambda", False, "sdk_app"), id="restate-lambda-h2", marks=_LAMBDA_MARK),
    pytest.param(
        ("restate-lambda", False, "ts_app"), id="restate-lambda-ts", marks=[_LAMBDA_MARK, _TS_MARK]
    ),
]


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def effects(e2e_workdir: Path) -> Effects:
    root = e2e_workdir / "effects"
    root.mkdir()
    return Effects(root)


@pytest.fixture(scope="session")
def sdk_app(e2e_workdir: Path, effects: Effects) -> Iterator[SdkApp]:
    app = SdkApp(e2e_workdir, effects.root)
    try:
        app.start()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="session")
def ts_app(e2e_workdir: Path, effects: Effects) -> Iterator[TsSdkApp]:
    """The TypeScript SDK's port of the handlers (``tests/support/ts_services.cjs``)."""
    missing = ts_sdk_missing()
    if missing is not None:
        pytest.skip(missing)
    app = TsSdkApp(e2e_workdir, effects.root)
    try:
        app.start()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="session", params=RUNTIME_PARAMS)
def runtime(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Runtime]:
    """A started runtime with an SDK app registered as a deployment."""
    rt: Runtime
    name, http11, app_fixture = request.param
    app: SdkApp | TsSdkApp = request.getfixturevalue(app_fixture)
    if name == "restate-server":
        binary = restate_server_bin()
        if binary is None:
            pytest.skip(
                "restate-server not found: run scripts/install_tools.sh or set RESTATE_SERVER_BIN"
            )
        rt = RestateServerRuntime(binary, tmp_path_factory.mktemp("restate-server"))
    else:
        rt = RestateLambdaRuntime(tmp_path_factory.mktemp("restate-lambda"))
    try:
        rt.sdk = app.sdk
        rt.start()
        rt.register(app.url, use_http_11=http11)
        yield rt
    finally:
        rt.stop()


@pytest.fixture
async def ingress(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=runtime.ingress_url, timeout=30) as client:
        yield client


@pytest.fixture
async def admin(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=runtime.admin_url, timeout=30) as client:
        yield client


@pytest.fixture
def tag() -> str:
    """A fresh name for this test's effects file and object/workflow keys."""
    return uuid.uuid4().hex
