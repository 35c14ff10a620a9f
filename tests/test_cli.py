"""The restate-lambda command line: clear errors for bad input, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from infra.cli import app
from tests.support.aws import dynamodb_endpoint, s3_endpoint

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
