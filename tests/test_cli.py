"""The restate-lambda command line: clear errors for bad input, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from infra.cli import app

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
