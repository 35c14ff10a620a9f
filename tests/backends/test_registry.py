"""Storage URLs -> backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from backends.registry import FACTORIES, open_backend
from backends.sqlite import SqliteBackend


async def test_memory() -> None:
    """memory:// opens a fresh in-memory backend."""
    backend = open_backend("memory://")
    assert isinstance(backend, MemoryBackend)
    await backend.close()


async def test_sqlite_absolute(tmp_path: Path) -> None:
    """sqlite:///abs/path.db opens that file, ignoring data_dir."""
    backend = open_backend(f"sqlite://{tmp_path}/abs.db", data_dir=tmp_path / "elsewhere")
    assert isinstance(backend, SqliteBackend)
    assert tmp_path / "abs.db" == backend.path
    await backend.close()


async def test_sqlite_relative_to_data_dir(tmp_path: Path) -> None:
    """sqlite://relative.db resolves against data_dir."""
    backend = open_backend("sqlite://sub/rel.db", data_dir=tmp_path)
    assert isinstance(backend, SqliteBackend)
    assert tmp_path / "sub" / "rel.db" == backend.path
    await backend.close()


async def test_sqlite_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without data_dir, a relative path resolves against the working directory."""
    monkeypatch.chdir(tmp_path)
    backend = open_backend("sqlite://rel.db")
    assert isinstance(backend, SqliteBackend)
    assert tmp_path / "rel.db" == backend.path
    await backend.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "no scheme"),
        ("store.db", "no scheme"),
        ("://x", "no scheme"),
        ("postgres://h/db", "unknown storage URL scheme 'postgres'"),
        ("sqlite://", "needs a file"),
        ("sqlite:///", "needs a file"),
        ("sqlite://x.db?mode=ro", "no query"),
        ("memory://something", "takes no path"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    """Malformed URLs and unknown schemes raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        open_backend(url)


def test_extension_point() -> None:
    """Schemes map to factories; dynamodb:// is added by registering one more."""
    assert {"memory", "sqlite"} <= set(FACTORIES)
