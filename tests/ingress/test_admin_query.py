"""``POST /query`` on a whole runtime in process: Restate's system tables, answered by DataFusion.

The runtime runs the official SDK's handlers (``tests/invoker/sdk_app.py``) on the memory and
SQLite backends. A counting backend checks that filters on invocation ids and object keys are
pushed down to the store (no scan), and that a query's reads stop at its budget.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from backends.api import Backend, Item
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from infra.testing import TestEnvironment
from infra.testing import test_environment as runtime_environment
from invoker.introspection.schema import TABLES, schema
from tests.invoker import sdk_app

JSON = {"content-type": "application/json"}
ROWS = {"accept": "application/json"}
ARROW = "application/vnd.apache.arrow.stream"
COPY_TARGET = Path("/tmp/restate-lambda-copy.csv")


def _copied() -> bool:
    """Whether a ``COPY ... TO`` wrote its file."""
    return COPY_TARGET.exists()


class CountingBackend:
    """A backend that records the reads it serves (``(method, pk)``)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.reads: list[tuple[str, str]] = []
        self.max_value_bytes = inner.max_value_bytes
        self.max_batch_ops = inner.max_batch_ops
        self.supports_expiry = inner.supports_expiry

    async def get(self, pk: str, sk: str) -> Item | None:
        self.reads.append(("get", pk))
        return await self.inner.get(pk, sk)

    async def query(self, pk: str, prefix: str = "", **kwargs: Any) -> list[Item]:
        self.reads.append(("query", pk))
        return await self.inner.query(pk, prefix, **kwargs)

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        self.reads.append(("scan", pk_prefix))
        return await self.inner.scan(pk_prefix, sk, limit=limit)

    async def write(self, ops: Sequence[Any]) -> None:
        await self.inner.write(ops)

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        return await self.inner.due(until_ms, limit)

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        await self.inner.delete_items(keys)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(params=["memory", "sqlite"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestEnvironment]:
    inner = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "db")
    sdk_app.calls.clear()
    async with runtime_environment(CountingBackend(inner)) as environment:  # type: ignore[arg-type]
        await environment.mount("sdk", sdk_app.app)
        yield environment


async def post(env: TestEnvironment, path: str, body: object = None) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return await env.ingress.post(path, content=content, headers=JSON if body is not None else {})


async def rows(env: TestEnvironment, sql: str) -> list[dict[str, Any]]:
    r = await env.admin.post("/v4/query", json={"query": sql}, headers=ROWS)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    result: list[dict[str, Any]] = r.json()["rows"]
    return result


def reads(env: TestEnvironment) -> list[tuple[str, str]]:
    backend = env.backend
    assert isinstance(backend, CountingBackend)
    return backend.reads


async def test_arrow_stream_unless_json_is_asked_for(env: TestEnvironment) -> None:
    """Arrow IPC for ``*/*`` (what the CLI sends for counts), no accept, or the Arrow type;
    JSON rows for ``application/json``; the count is an Int64 as the CLI reads it."""
    await post(env, "/Greeter/greet", "ada")
    query = "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000)"
    for accept in ("*/*", None, ARROW, f"{ARROW}, application/json;q=0.5", "text/html"):
        headers = {} if accept is None else {"accept": accept}
        r = await env.admin.post("/query", json={"query": query}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == ARROW, accept
        table = pa.ipc.open_stream(r.content).read_all()
        assert table.schema.field(0).type == pa.int64()
        assert table.column(0).to_pylist() == [1]
    for accept in ("application/json", "application/json, */*", "*/*;q=0.1, application/json"):
        r = await env.admin.post("/v4/query", json={"query": query}, headers={"accept": accept})
        assert r.headers["content-type"] == "application/json", accept
        assert r.json() == {"rows": [{"count(Int64(1))": 1}]}


async def test_schemas_are_restate_servers(env: TestEnvironment) -> None:
    """Every table answers with its pinned schema (names, order, types) and
    ``information_schema`` lists the same columns, as restate-server's catalog does."""
    for table in TABLES:
        r = await env.admin.post("/query", json={"query": f"select * from {table} limit 0"})
        assert pa.ipc.open_stream(r.content).read_all().schema == schema(table), table
    listed = await rows(
        env,
        "select table_catalog, table_schema, column_name, data_type from "
        "information_schema.columns where table_name = 'sys_invocation' order by ordinal_position",
    )
    assert {(r["table_catalog"], r["table_schema"]) for r in listed} == {("restate", "public")}
    assert [r["column_name"] for r in listed][:3] == ["id", "vqueue_id", "target"]
    assert {r["data_type"] for r in listed if r["column_name"] == "created_at"} == {
        'Timestamp(ms, "+00:00")'
    }


async def test_invocation_rows(env: TestEnvironment) -> None:
    """sys_invocation: status, target, timings, completion, retries and the last failure with
    its stack trace, as Restate names and formats them (JSON: ISO times, ISO durations)."""
    ok = await post(env, "/Greeter/greet", "ada")
    failed = await post(env, "/Steps/terminal")
    flaky = (await post(env, "/Steps/flaky/send", 10)).json()["invocationId"]
    await env.settle()
    by_id = {r["id"]: r for r in await rows(env, "select * from sys_invocation")}
    done = by_id[ok.headers["x-restate-id"]]
    assert done["target"] == "Greeter/greet" and done["target_service_ty"] == "service"
    assert done["status"] == "completed" and done["completion_result"] == "success"
    assert done["invoked_by"] == "ingress" and done["pinned_deployment_id"].startswith("dp_")
    assert done["created_at"].endswith("Z") and "T" in done["created_at"]
    assert done["completion_retention"].startswith("PT") and done["completion_retention"][-1] == "S"
    assert "last_failure" not in done and "retry_count" not in done  # nulls are left out
    bad = by_id[failed.headers["x-restate-id"]]
    assert bad["completion_result"] == "failure"
    assert bad["completion_failure"].startswith("[")
    retrying = by_id[flaky]
    assert retrying["status"] == "backing-off" and retrying["retry_count"] >= 1
    assert retrying["last_failure"].startswith("[500] ValueError('transient failure")
    assert "Traceback" in retrying["last_failure"]  # the SDK's stack trace, kept
    assert _instant(retrying["next_retry_at"]) > _instant(retrying["created_at"])
    status = await rows(env, f"select status from sys_invocation_status where id = '{flaky}'")
    assert status == [{"status": "invoked"}]
    state = await rows(env, f"select in_flight from sys_invocation_state where id = '{flaky}'")
    assert state == [{"in_flight": False}]


async def test_journal_rows(env: TestEnvironment) -> None:
    """sys_journal: entry types, run names, completion, the call's target and id, sleeps."""
    caller = await post(env, "/Steps/caller", "bob")
    inv = caller.headers["x-restate-id"]
    journal = await rows(env, f"select * from sys_journal where id = '{inv}' order by index")
    assert [r["index"] for r in journal] == list(range(len(journal)))
    assert journal[0]["entry_type"] == "Command: Input"
    call = next(r for r in journal if r["entry_type"] == "Command: Call")
    assert call["invoked_target"] == "Greeter/greet" and call["invoked_id"].startswith("inv_")
    assert call["completed"] is True and call["version"] == 2
    assert (
        json.loads(call["entry_json"])["Command"]["Call"]["request"]["invocation_id"]
        == (call["invoked_id"])
    )
    assert bytes.fromhex(call["raw"]) and call["raw_length"] == len(bytes.fromhex(call["raw"]))
    assert journal[-1]["entry_type"] == "Command: Output"
    sleeper = (await post(env, "/Steps/sleepy/send", 60)).json()["invocationId"]
    await env.settle()
    sleep = await rows(
        env,
        f"select name, completed, sleep_wakeup_at, entry_json from sys_journal "
        f"where id = '{sleeper}' and entry_type = 'Command: Sleep'",
    )
    assert len(sleep) == 1 and sleep[0]["completed"] is False
    wake = json.loads(sleep[0]["entry_json"])["Command"]["Sleep"]["wake_up_time"]
    expected = datetime.fromtimestamp(wake // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert sleep[0]["sleep_wakeup_at"].startswith(expected), sleep


async def test_keyed_tables(env: TestEnvironment) -> None:
    """state (hex value + utf8), sys_keyed_service_status (lock holder), sys_inbox (queued),
    sys_promise (a workflow's pending promise), sys_service and sys_deployment."""
    await post(env, "/Counter/k/add", 42)
    holder = (await post(env, "/Awaiter/a/wait/send")).json()["invocationId"]
    queued = (await post(env, "/Awaiter/a/wait/send")).json()["invocationId"]
    await post(env, "/Signup/w1/signup_run/send", "e@x")
    await env.settle()
    state = await rows(env, "select * from state where service_name = 'Counter'")
    assert [(r["service_key"], r["key"], r["value"], r["value_utf8"]) for r in state] == [
        ("k", "count", "3432", "42")
    ]
    locked = await rows(env, "select service_key, invocation_id from sys_keyed_service_status")
    assert {"service_key": "a", "invocation_id": holder} in locked
    inbox = await rows(env, "select * from sys_inbox where service_name = 'Awaiter'")
    assert [(r["service_key"], r["id"], r["sequence_number"]) for r in inbox] == [("a", queued, 0)]
    pending = await rows(env, "select id, status from sys_invocation where status = 'pending'")
    assert pending == [{"id": queued, "status": "pending"}]
    promises = await rows(env, "select service_key, key, completed from sys_promise")
    assert promises == [{"service_key": "w1", "key": "code", "completed": False}]
    services = {r["name"]: r for r in await rows(env, "select * from sys_service")}
    assert services["Counter"]["ty"] == "virtual_object" and services["Private"]["public"] is False
    deployments = await rows(env, "select id, ty, services from sys_deployment")
    assert deployments[0]["ty"] == "http" and "Signup" in deployments[0]["services"]
    joined = await rows(
        env,
        "select inv.id, dp.id is not null as exists from sys_invocation inv left join "
        f"sys_deployment dp on dp.id = inv.pinned_deployment_id where inv.id = '{holder}'",
    )
    assert joined == [{"id": holder, "exists": True}]


async def test_filters_are_pushed_down(env: TestEnvironment) -> None:
    """An id, an id list, a service name and key: read directly, never a scan of the store."""
    a = (await post(env, "/Greeter/greet", "a")).headers["x-restate-id"]
    b = (await post(env, "/Greeter/greet", "b")).headers["x-restate-id"]
    await post(env, "/Counter/k/add", 1)
    queries = [
        f"select * from sys_invocation where id = '{a}'",
        f"select id from sys_invocation inv where inv.id in ('{a}', '{b}') order by id",
        f"select * from sys_journal sj where sj.id = '{a}'",
        f"select * from sys_invocation_status where id = '{b}' and status != 'completed'",
        "select key, value from state where service_name = 'Counter' and service_key = 'k' ;",
        "select * from sys_inbox where service_name = 'Counter' and service_key in ('k', 'x')",
        "select * from sys_promise where service_name = 'Signup' and service_key = 'w'",
    ]
    for sql in queries:
        reads(env).clear()
        await rows(env, sql)
        assert reads(env), sql
        assert not [r for r in reads(env) if r[0] == "scan"], (sql, reads(env))
    found = await rows(env, f"select id from sys_invocation inv where inv.id in ('{a}', '{b}')")
    assert sorted(r["id"] for r in found) == sorted([a, b])
    reads(env).clear()
    await rows(env, "select * from state where service_name = 'Counter'")
    assert ("scan", "obj/Counter/") in reads(env)  # a key range, not every object
    reads(env).clear()
    assert await rows(env, "select * from sys_invocation where id = 'not-an-id'") == []
    assert reads(env) == []


async def test_pushdown_keeps_answers_exact(env: TestEnvironment) -> None:
    """Restrictions only narrow what is read, never the answer: ``OR`` with an unrestricted
    side, a join, a filter above a ``LIMIT``, mismatched literal types."""
    a = (await post(env, "/Greeter/greet", "a")).headers["x-restate-id"]
    b = (await post(env, "/Greeter/greet", "b")).headers["x-restate-id"]
    await post(env, "/Counter/k/add", 1)
    either = await rows(
        env, f"select id from sys_invocation where id = '{a}' or target_handler_name = 'add'"
    )
    assert len(either) == 2 and {"id": a} in either
    both = await rows(
        env,
        f"select x.id from sys_invocation x join sys_invocation y on x.id = y.id "
        f"where x.id = '{a}' or y.id = '{b}' order by x.id",
    )
    assert sorted(r["id"] for r in both) == sorted([a, b])
    limited = await rows(
        env,
        f"select count(*) as n from (select * from sys_invocation limit 100) where id = '{b}'",
    )
    assert limited == [{"n": 1}]
    assert await rows(env, "select id from sys_invocation where journal_size = '2'") != []
    assert await rows(env, f"select id from sys_invocation where id = '{a}' and id = '{b}'") == []


async def test_scan_budget_and_result_limit(
    env: TestEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that would read more items than its budget is a 400 naming the way out; an
    id lookup still works; a result over the row limit is a 400 too."""
    ids = [(await post(env, "/Greeter/greet", str(i))).headers["x-restate-id"] for i in range(4)]
    monkeypatch.setenv("RESTATE_LAMBDA_QUERY_MAX_ITEMS", "3")
    r = await env.admin.post("/query", json={"query": "select count(*) from sys_invocation"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and "more than 3 items" in body["message"], body
    assert await rows(env, f"select id from sys_invocation where id = '{ids[0]}'") == [
        {"id": ids[0]}
    ]
    limited = await rows(env, "select count(*) as n from (select * from sys_invocation limit 2)")
    assert limited == [{"n": 2}]  # a pushed LIMIT reads only what it keeps
    monkeypatch.setenv("RESTATE_LAMBDA_QUERY_MAX_ROWS", "10")
    r = await env.admin.post("/query", json={"query": "select * from generate_series(1, 100)"})
    assert r.status_code == 400 and "more than 10 rows" in r.json()["message"], r.text


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("selec 1", "ParserError"),
        ("select nope from sys_invocation", "No field named nope"),
        ("select * from no_such_table", "not found"),
        (f"COPY (select 1) TO '{COPY_TARGET}'", "DML not supported"),
        ("CREATE TABLE t AS SELECT 1", "DDL not supported"),
        ("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'", "not supported"),
        ("SET datafusion.execution.batch_size = 1", "not supported"),
        ("select * from '/etc/passwd'", "not found"),
        ("", "statement"),
    ],
)
async def test_bad_sql_is_a_400(env: TestEnvironment, sql: str, expected: str) -> None:
    """Bad or non-read-only SQL: 400 ``{code, message}`` with DataFusion's reason, no file
    touched."""
    r = await env.admin.post("/v4/query", json={"query": sql})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and body["message"].startswith("Datafusion error"), body
    assert expected in body["message"], body
    assert not _copied()


async def test_modify_state(env: TestEnvironment) -> None:
    """``POST /services/{svc}/state``: replaces the state with the CLI's version check, and
    refuses (409) while the key is locked or when the version is stale."""
    from invoker.state_edit import state_version

    await post(env, "/Counter/k/add", 5)
    current = await rows(
        env, "select key, value from state where service_name = 'Counter' and service_key = 'k'"
    )
    version = state_version({r["key"]: bytes.fromhex(r["value"]) for r in current})
    stale = {"object_key": "k", "new_state": {}, "version": state_version({})}
    r = await env.admin.post("/v4/services/Counter/state", json=stale)
    assert r.status_code == 409, r.text
    body = {"object_key": "k", "new_state": {"count": list(b"9")}, "version": version}
    r = await env.admin.post("/v4/services/Counter/state", json=body)
    assert r.status_code == 202, r.text
    assert (await post(env, "/Counter/k/get")).json() == 9
    r = await env.admin.post("/services/Counter/state", json={"object_key": "k", "new_state": {}})
    assert r.status_code == 202
    assert await env.engine.get_state("Counter", "k") == {}

    await post(env, "/Awaiter/busy/wait/send")
    await env.settle()
    r = await env.admin.post(
        "/services/Awaiter/state", json={"object_key": "busy", "new_state": {}}
    )
    assert r.status_code == 409 and "locked by invocation inv_" in r.json()["message"], r.text
    r = await env.admin.post("/services/Greeter/state", json={"object_key": "x", "new_state": {}})
    assert r.status_code == 400, r.text


def test_state_version_matches_restate() -> None:
    """Restate's own test vectors for ``StateMutationVersion::from_user_state``."""
    from invoker.state_edit import state_version

    assert state_version({"name": b"bob"}) == "tDqA04Lj3_qJ-PgNPTecXDGZgpwy6jm2Ni2BYqJIthM"
    assert state_version({"b": b"bbb", "a": b"aaa"}) == (
        "RVM17P6x18Wp-JnzQ01BzmqCvhAunTOQI_az6Px3Zyk"
    )
    assert state_version({}) == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def _instant(rfc3339: str) -> datetime:
    """An RFC 3339 time as a datetime (strings compare wrongly: "…00.500Z" < "…00Z")."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
