"""The official ``restate`` CLI (1.7.12) in full against ``restate-lambda dev``.

Every command the CLI offers for invocations, services, deployments, state, SQL and the
environment runs against ``restate-lambda dev`` on SQLite and on DynamoDB Local, and against
restate-server 1.7.12 itself (marked ``server``) so that each expectation is checked on the
reference too. The CLI reads invocations, journals and state through ``POST /v4/query``
(SQL answered as Arrow IPC or JSON) and changes state through ``POST /services/{svc}/state``.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import call, send
from tests.support.effects import Effects, poll
from tests.support.runtimes import (
    RestateLambdaRuntime,
    RestateServerRuntime,
    Runtime,
    SdkApp,
    restate_cli_bin,
    restate_server_bin,
)

pytestmark = pytest.mark.timeout(600)


class _DynamoDbRuntime(RestateLambdaRuntime):
    """``restate-lambda dev --storage dynamodb://…`` on a fresh DynamoDB Local table."""

    name = "restate-lambda-dynamodb"

    def __init__(self, workdir: Path, storage: str) -> None:
        super().__init__(workdir)
        self.process.argv += ["--storage", storage]


def _dynamodb_storage() -> str:
    from infra.provision import create_table
    from tests.support.aws import REGION, SERVERS, aws_test_env

    aws_test_env()
    endpoint = SERVERS.dynamodb()
    table = f"cli-{uuid.uuid4().hex[:12]}"
    create_table(SERVERS.client("dynamodb"), table)
    return f"dynamodb://{table}?region={REGION}&endpoint_url={endpoint}"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("restate-server", marks=pytest.mark.server),
        "sqlite",
        "dynamodb",
    ],
)
def cli_runtime(
    request: pytest.FixtureRequest, sdk_app: SdkApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    """A runtime with the SDK app registered: restate-server, or restate-lambda dev on SQLite
    or on DynamoDB Local."""
    if restate_cli_bin() is None:
        pytest.skip("restate CLI not found: run scripts/install_tools.sh or set RESTATE_CLI")
    workdir = tmp_path_factory.mktemp(f"cli-{request.param}")
    rt: Runtime
    if request.param == "restate-server":
        binary = restate_server_bin()
        if binary is None:
            pytest.skip("restate-server not found")
        rt = RestateServerRuntime(binary, workdir)
    elif request.param == "sqlite":
        rt = RestateLambdaRuntime(workdir)
    else:
        rt = _DynamoDbRuntime(workdir, _dynamodb_storage())
    try:
        rt.start()
        rt.register(sdk_app.url)
        yield rt
    finally:
        rt.stop()


@pytest.fixture(scope="module")
def extra_app(e2e_workdir: Path, effects: Effects) -> Iterator[SdkApp]:
    """A second deployment (service ``CliExtra``) to register and remove with the CLI."""
    app = SdkApp(e2e_workdir / "extra", effects.root, app="tests.e2e.cli_extra_app:app")
    (e2e_workdir / "extra").mkdir(exist_ok=True)
    try:
        app.start()
        yield app
    finally:
        app.stop()


@pytest.fixture
async def ing(cli_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cli_runtime.ingress_url, timeout=30) as client:
        yield client


def restate(rt: Runtime, home: Path, *args: str, ok: bool = True) -> str:
    """Run the CLI (``--yes``, no colors, a config dir of its own); stdout + stderr."""
    binary = restate_cli_bin()
    assert binary is not None
    env = {
        **os.environ,
        "RESTATE_ADMIN_URL": rt.admin_url,
        "RESTATE_INGRESS_URL": rt.ingress_url,
        "RESTATE_CLI_CONFIG_HOME": str(home),
        "NO_COLOR": "1",
        "TERM": "dumb",
        "CI": "1",
    }
    done = subprocess.run(
        [binary, "--yes", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    out = done.stdout + done.stderr
    if ok:
        assert done.returncode == 0, f"restate {' '.join(args)} failed:\n{out}"
    else:
        assert done.returncode != 0, f"restate {' '.join(args)} should fail:\n{out}"
    return out


async def test_invocations_list_and_describe(
    cli_runtime: Runtime, ing: httpx.AsyncClient, effects: Effects, tmp_path: Path
) -> None:
    """``invocations list`` shows active invocations (``--all`` the completed ones too) and
    ``describe`` shows the journal: named runs, the sleep's wake-up time, a call's target."""
    tag = uuid.uuid4().hex
    done = await call(ing, "/Greeter/greet", tag)
    assert done.status_code == 200, done.text
    greet_id = done.headers["x-restate-id"]
    sleeper = await send(ing, "/Sleeper/sleep", {"tag": tag, "ms": 3_600_000})
    await effects.wait_for(tag, "sleeping")
    caller = await call(ing, "/Caller/call_greet", tag)
    assert caller.status_code == 200, caller.text
    caller_id = caller.headers["x-restate-id"]

    async def listed() -> str:
        return restate(cli_runtime, tmp_path, "invocations", "list")

    active = await poll(listed, lambda out: "suspended" in out and sleeper in out, what="list")
    assert greet_id not in active, active
    everything = restate(cli_runtime, tmp_path, "invocations", "list", "--all", "--limit", "500")
    assert greet_id in everything and sleeper in everything, everything
    assert "completed with success" in everything, everything

    described = restate(cli_runtime, tmp_path, "invocations", "describe", sleeper)
    assert "Sleeper/sleep" in described, described
    assert "Command: Run [before]" in described, described
    assert "Command: Sleep until" in described, described
    assert "suspended" in described, described
    described = restate(cli_runtime, tmp_path, "invocations", "describe", caller_id)
    assert "completed with success" in described, described
    assert "Command: Call Greeter/greet inv_" in described, described

    restate(cli_runtime, tmp_path, "invocations", "cancel", sleeper)  # leave nothing running


async def test_cancel_kill_purge(
    cli_runtime: Runtime, ing: httpx.AsyncClient, effects: Effects, tmp_path: Path
) -> None:
    """``cancel`` runs the compensation, ``kill`` does not; both end with 409; ``purge``
    removes a completed invocation."""
    tag = uuid.uuid4().hex
    cancelled = await send(ing, "/Cancellable/run", tag)
    await effects.wait_for(tag, "sleeping")
    out = restate(cli_runtime, tmp_path, "invocations", "cancel", cancelled)
    assert "Cancelled 1 invocations" in out, out
    r = await ing.get(f"/restate/invocation/{cancelled}/attach")
    assert r.status_code == 409, r.text
    assert effects.count(tag, "compensate") == 1

    tag2 = uuid.uuid4().hex
    killed = await send(ing, "/Cancellable/run", tag2)
    await effects.wait_for(tag2, "sleeping")
    out = restate(cli_runtime, tmp_path, "invocations", "kill", killed)
    assert "Killed 1 invocations" in out, out
    r = await ing.get(f"/restate/invocation/{killed}/attach")
    assert r.status_code == 409, r.text
    assert effects.count(tag2, "compensate") == 0

    out = restate(cli_runtime, tmp_path, "invocations", "purge", cancelled)
    assert "Purged 1 invocations" in out, out

    async def gone() -> int:
        return (await ing.get(f"/restate/invocation/{cancelled}/output")).status_code

    await poll(gone, lambda status: status == 404, what="purged invocation gone")
    out = restate(cli_runtime, tmp_path, "invocations", "cancel", cancelled, ok=False)
    assert "No invocations found" in out, out


async def test_services(cli_runtime: Runtime, ing: httpx.AsyncClient, tmp_path: Path) -> None:
    """``services list/describe/status``: names, handlers, per-handler counts and locked keys."""
    key = uuid.uuid4().hex
    r = await call(ing, f"/Counter/{key}/add", 3)
    assert r.status_code == 200, r.text
    listed = restate(cli_runtime, tmp_path, "services", "list")
    for name in ("Greeter", "Counter", "Signup", "Sleeper"):
        assert name in listed, listed
    described = restate(cli_runtime, tmp_path, "services", "describe", "Counter")
    assert "VirtualObject" in described, described
    for handler in ("add", "get", "reset"):
        assert handler in described, described
    status = restate(cli_runtime, tmp_path, "services", "status", "Counter")
    assert "Counter virtual object" in status, status
    assert "add" in status and "Recent Invocations" in status, status
    assert r.headers["x-restate-id"] in status or key in status, status
    overall = restate(cli_runtime, tmp_path, "services", "status")
    assert "Summary" in overall and "Greeter" in overall, overall


async def test_deployments(
    cli_runtime: Runtime, extra_app: SdkApp, ing: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``deployments list/describe/register/remove``."""
    listed = restate(cli_runtime, tmp_path, "deployments", "list")
    assert "dp_" in listed, listed
    deployment = next(w for w in listed.split() if w.startswith("dp_"))
    described = restate(cli_runtime, tmp_path, "deployments", "describe", deployment)
    assert "Counter" in described and "Request/Response" in described, described

    out = restate(cli_runtime, tmp_path, "deployments", "register", "--use-http1.1", extra_app.url)
    assert "CliExtra" in out, out
    r = await call(ing, "/CliExtra/ping", "x")
    assert r.status_code == 200 and r.json() == "pong x", r.text
    async with httpx.AsyncClient(base_url=cli_runtime.admin_url) as admin:
        found = (await admin.get("/deployments")).json()["deployments"]
    extra = next(d["id"] for d in found if extra_app.url in str(d.get("uri")))
    out = restate(cli_runtime, tmp_path, "deployments", "remove", extra, ok=False)
    assert "--force" in out, out
    out = restate(cli_runtime, tmp_path, "deployments", "remove", "--force", extra)
    assert "removed successfully" in out, out
    assert extra not in restate(cli_runtime, tmp_path, "deployments", "list")


async def test_kv_get_and_clear(
    cli_runtime: Runtime, ing: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``kv get`` shows a key's state; ``kv clear`` removes it (the handler then reads 0)."""
    key = uuid.uuid4().hex
    r = await call(ing, f"/Counter/{key}/add", 7)
    assert r.status_code == 200, r.text
    state = restate(cli_runtime, tmp_path, "kv", "get", "Counter", key)
    assert "count" in state and "7" in state, state
    out = restate(cli_runtime, tmp_path, "kv", "clear", f"Counter/{key}")
    assert "Enqueued successfully" in out, out

    async def value() -> int:
        return int((await ing.post(f"/Counter/{key}/get")).json())

    await poll(value, lambda v: v == 0, what="state cleared")
    assert "count" not in restate(cli_runtime, tmp_path, "kv", "get", "Counter", key)


async def test_sql(cli_runtime: Runtime, ing: httpx.AsyncClient, tmp_path: Path) -> None:
    """``restate sql`` (Arrow IPC answers): a table, ``--json``, and a clear error."""
    r = await call(ing, "/Greeter/greet", "sql")
    inv = r.headers["x-restate-id"]
    out = restate(cli_runtime, tmp_path, "sql", "select id, status from sys_invocation")
    assert inv in out and "completed" in out and "rows. Query took" in out, out
    query = (
        "select id, target, status, completion_result, created_at from sys_invocation "
        f"where id = '{inv}'"
    )
    out = restate(cli_runtime, tmp_path, "sql", "--json", query)
    rows = json.loads(out[: out.rindex("]") + 1])
    assert len(rows) == 1, out
    assert rows[0]["id"] == inv and rows[0]["target"] == "Greeter/greet", rows
    assert rows[0]["status"] == "completed" and rows[0]["completion_result"] == "success", rows
    out = restate(cli_runtime, tmp_path, "sql", "selec id from sys_invocation", ok=False)
    assert "ParserError" in out, out


def test_whoami(cli_runtime: Runtime, tmp_path: Path) -> None:
    """``whoami`` finds the admin API healthy."""
    out = restate(cli_runtime, tmp_path, "whoami")
    assert "is healthy" in out, out


#: ``information_schema.columns`` of restate-server 1.7.12 for the tables restate-lambda serves
#: (``[name, data_type, is_nullable]`` in order), read from a running server.
PINNED_COLUMNS = Path(__file__).with_name("restate_sys_columns.json")


def test_system_table_columns(cli_runtime: Runtime) -> None:
    """Both runtimes list the same columns, types and order for every table restate-lambda
    serves (the pinned file is restate-server 1.7.12's answer)."""
    pinned = json.loads(PINNED_COLUMNS.read_text())
    names = ", ".join(f"'{t}'" for t in pinned)
    query = (
        "select table_name, column_name, data_type, is_nullable from information_schema.columns "
        f"where table_schema = 'public' and table_name in ({names}) "
        "order by table_name, ordinal_position"
    )
    r = httpx.post(
        f"{cli_runtime.admin_url}/query",
        json={"query": query},
        headers={"accept": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    found: dict[str, list[list[str]]] = {}
    for row in r.json()["rows"]:
        found.setdefault(row["table_name"], []).append(
            [row["column_name"], row["data_type"], row["is_nullable"]]
        )
    assert found == pinned
