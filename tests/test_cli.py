"""The restate-lambda command line: clear errors for bad input, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from infra.cli import app
from tests.support.aws import dynamodb_endpoint, s3_endpoint
from tests.support.dev import ROOT, DevServer, cli

__all__ = ["dynamodb_endpoint", "s3_endpoint"]  # fixtures

runner = CliRunner()


def test_bad_storage_url_is_a_clear_error(tmp_path: Path) -> None:
    """An unknown storage scheme exits 2 with a one-line error naming the known schemes."""
    result = runner.invoke(app, ["dev", "--storage", "bogus://x", "--data-dir", str(tmp_path)])
    assert 2 == result.exit_code
    assert "unknown storage URL scheme 'bogus'" in result.output
    assert "Traceback" not in result.output


def test_unreachable_dynamodb_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A DynamoDB endpoint nobody listens on fails at start, not at the first request."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    url = "dynamodb://table1?region=us-east-1&endpoint_url=http://127.0.0.1:1"
    result = runner.invoke(app, ["dev", "--storage", url, "--data-dir", str(tmp_path)])
    assert 2 == result.exit_code
    assert "storage unavailable" in result.output and "unreachable" in result.output


def test_missing_app_file(tmp_path: Path) -> None:
    """Serving a module that does not exist is a clear error."""
    result = runner.invoke(app, ["dev", str(tmp_path / "nope.py"), "--data-dir", str(tmp_path)])
    assert 2 == result.exit_code
    assert "no such file" in result.output


def test_storage_init_sqlite(tmp_path: Path) -> None:
    """storage init creates an SQLite database."""
    db = tmp_path / "x.db"
    result = runner.invoke(app, ["storage", "init", f"sqlite:///{db}"])
    assert 0 == result.exit_code, result.output
    assert db.exists()


def test_admin_unreachable() -> None:
    """A CLI command against a dead admin API exits 1 with a message."""
    result = runner.invoke(app, ["deployments", "list", "--admin-url", "http://127.0.0.1:1"])
    assert 1 == result.exit_code
    assert "cannot reach the admin API" in result.output


def test_storage_gc(dynamodb_endpoint: str, s3_endpoint: str) -> None:
    """storage gc sweeps a dynamodb:// URL's blobs and prints what it found."""
    import asyncio
    import uuid

    from backends.dynamodb import DynamoDbBackend
    from infra.provision import ensure_storage
    from tests.support.aws import TEST_BUCKET

    url = (
        f"dynamodb://cli-gc-{uuid.uuid4().hex[:8]}?region=us-east-1&endpoint_url="
        f"{dynamodb_endpoint}&bucket={TEST_BUCKET}&s3_endpoint_url={s3_endpoint}"
    )
    ensure_storage(url)
    backend = DynamoDbBackend.from_url(url)
    assert backend.blobs is not None
    backend.blobs.put(b"an upload whose write never happened", owner=("p", "s"))
    asyncio.run(backend.close())
    result = runner.invoke(app, ["storage", "gc", url, "--grace-hours", "1"])
    assert 0 == result.exit_code, result.output
    assert " 0 deleted" in result.output and "younger than 1 h" in result.output
    bad = runner.invoke(app, ["storage", "gc", url, "--grace-hours", "0.5"])
    assert 2 == bad.exit_code and "grace period" in bad.output
    no_bucket = runner.invoke(app, ["storage", "gc", url.split("&bucket=")[0]])
    assert 1 == no_bucket.exit_code and "no S3 bucket" in no_bucket.output


# -- against a running dev server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``restate-lambda dev examples/counter.py`` for the listing and error tests."""
    server = DevServer(tmp_path_factory.mktemp("cli") / "d", str(ROOT / "examples" / "counter.py"))
    try:
        server.wait_for("(ready)")
        yield server
    finally:
        server.stop()


def _run(server: DevServer, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, "--admin-url", server.admin)


def test_listings_are_tables_or_json(dev_server: DevServer) -> None:
    """deployments / services list print tables, and JSON with --json."""
    deployments = _run(dev_server, "deployments", "list")
    assert 0 == deployments.returncode, deployments.stderr
    header = deployments.stdout.splitlines()[0].split()
    assert ["ID", "ENDPOINT", "SERVICES", "CREATED"] == header
    assert "asgi://counter" in deployments.stdout and "Counter" in deployments.stdout
    as_json = json.loads(_run(dev_server, "deployments", "list", "--json").stdout)
    assert ["asgi://counter"] == [d["uri"] for d in as_json]
    services = _run(dev_server, "services", "list")
    assert "Counter" in services.stdout and "add, get, reset" in services.stdout
    assert ["Counter"] == [
        s["name"] for s in json.loads(_run(dev_server, "services", "list", "--json").stdout)
    ]


def test_empty_listing_says_so(dev_server: DevServer) -> None:
    """An empty list is a remark on stderr (exit 0), and [] with --json."""
    empty = _run(dev_server, "invocations", "list")
    assert 0 == empty.returncode
    assert "" == empty.stdout and "no invocations in flight" in empty.stderr
    assert [] == json.loads(_run(dev_server, "invocations", "list", "--json").stdout)


def test_kv_get_quotes_keys(dev_server: DevServer) -> None:
    """A key with a quote reads back (the SQL literal doubles it); an unknown key exits 3."""
    key = 'o\'brien "the" ; drop'
    r = httpx.post(f"{dev_server.ingress}/Counter/{quote(key, safe='')}/add", json=5)
    assert 200 == r.status_code, r.text
    shown = _run(dev_server, "kv", "get", "Counter", key)
    assert 0 == shown.returncode, shown.stderr
    assert re.search(r"count\s+5", shown.stdout), shown.stdout
    assert {"count": 5} == json.loads(
        _run(dev_server, "kv", "get", "Counter", key, "--json").stdout
    )
    missing = _run(dev_server, "kv", "get", "Counter", "nobody")
    assert 3 == missing.returncode
    assert "error: no state for Counter/nobody\n" == missing.stderr
    listed = _run(dev_server, "invocations", "list", "--all")
    assert "Counter/" in listed.stdout and "completed" in listed.stdout


def test_errors_are_one_line_with_exit_codes(dev_server: DevServer) -> None:
    """Not found exits 3; a refused request exits 1 with the API's message, not raw JSON."""
    unknown = _run(
        dev_server, "invocations", "describe", "inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )
    assert unknown.returncode in (1, 3)
    bad = _run(dev_server, "invocations", "describe", "nonsense")
    assert 1 == bad.returncode
    assert 1 == len(bad.stderr.strip().splitlines()), bad.stderr
    assert (
        bad.stderr.startswith("error: ")
        and "(HTTP 400 from GET /invocations/nonsense)" in bad.stderr
    )
    assert "{" not in bad.stderr
    register = _run(dev_server, "deployments", "register", "http://127.0.0.1:1/")
    assert 1 == register.returncode and 1 == len(register.stderr.strip().splitlines())
    assert "Traceback" not in register.stderr
    gone = _run(dev_server, "deployments", "remove", "dp_nope")
    assert 3 == gone.returncode and "no deployment dp_nope" in gone.stderr


def test_shell_completion_is_offered() -> None:
    """Typer's completion install is available."""
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output


def test_register_speaks_http2_unless_told_http1(dev_server: DevServer, tmp_path: Path) -> None:
    """``deployments register`` reaches the endpoint over h2c by default (as restate's CLI),
    over HTTP/1.1 with ``--use-http1.1``; the service answers through the ingress either way."""
    from tests.support.runtimes import SdkApp

    (tmp_path / "effects").mkdir()
    extra = SdkApp(tmp_path, tmp_path / "effects", app="tests.e2e.cli_extra_app:app")
    extra.start()
    try:
        for flags, version in (((), "HTTP/2.0"), (("--use-http1.1", "--force"), "HTTP/1.1")):
            out = _run(dev_server, "deployments", "register", *flags, extra.url, "--json")
            assert 0 == out.returncode, out.stderr
            listed = httpx.get(f"{dev_server.admin}/deployments", timeout=10).json()
            (mine,) = [d for d in listed["deployments"] if d.get("uri") == extra.url]
            assert version == mine["http_version"], mine
            r = httpx.post(f"{dev_server.ingress}/CliExtra/ping", json=version, timeout=30)
            assert r.status_code == 200 and r.json() == f"pong {version}", r.text
    finally:
        extra.stop()
