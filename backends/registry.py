"""Open a backend from a storage URL.

=====================================  ===================================================
``memory://``                          :class:`~backends.memory.MemoryBackend` (nothing durable)
``sqlite:///abs/path.db``              :class:`~backends.sqlite.SqliteBackend` at an absolute path
``sqlite://relative.db``               ... relative to ``data_dir`` (or the working directory)
``dynamodb://TABLE?region=..&...``     :class:`~backends.dynamodb.DynamoDbBackend` on ``TABLE``
                                       (options: ``region``, ``endpoint_url``, ``bucket``,
                                       ``s3_endpoint_url``; see :func:`backends.dynamodb.parse_url`)
=====================================  ===================================================

Adding a backend (e.g. ``dynamodb://table?region=...``) is one entry in :data:`FACTORIES`: a
function taking the URL's remainder after ``scheme://`` and the data directory. Factories import
their module lazily so that ``memory://`` never imports SQLite or boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from backends.api import Backend

#: A factory gets the URL after ``scheme://`` and the optional data directory.
BackendFactory = Callable[[str, Path | None], Backend]


def _open_memory(rest: str, data_dir: Path | None) -> Backend:
    from backends.memory import MemoryBackend

    if rest:
        raise ValueError(f"memory:// takes no path or options, got {rest!r}")
    return MemoryBackend()


def _open_sqlite(rest: str, data_dir: Path | None) -> Backend:
    from backends.sqlite import SqliteBackend

    if not rest or rest == "/":
        raise ValueError(
            "sqlite:// needs a file: sqlite:///abs/path.db or sqlite://relative/path.db"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(f"sqlite:// takes no query or fragment, got {rest!r}")
    path = Path(rest)
    if not path.is_absolute():
        path = (data_dir if data_dir is not None else Path.cwd()) / path
    return SqliteBackend(path)


def _open_dynamodb(rest: str, data_dir: Path | None) -> Backend:
    # backends.dynamodb imports boto3 only when a backend is constructed.
    from backends.dynamodb import DynamoDbBackend, parse_url

    return DynamoDbBackend.from_settings(parse_url(rest))


#: URL scheme -> factory. Register new backends here.
FACTORIES: dict[str, BackendFactory] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "dynamodb": _open_dynamodb,
}


def open_backend(url: str, *, data_dir: Path | None = None) -> Backend:
    """Open the backend a storage URL names.

    Args:
        url: ``memory://``, ``sqlite:///abs/path.db``, ``sqlite://relative.db`` or
            ``dynamodb://TABLE?region=...``.
        data_dir: base directory for relative paths (default: the working directory).

    Returns:
        An open backend; the caller closes it with ``await backend.close()``.

    Raises:
        ValueError: the URL is malformed or its scheme unknown.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValueError(
            f"storage URL {url!r} has no scheme; expected one of "
            + ", ".join(f"{s}://..." for s in sorted(FACTORIES))
        )
    factory = FACTORIES.get(scheme.lower())
    if factory is None:
        raise ValueError(
            f"unknown storage URL scheme {scheme!r} in {url!r}; "
            f"known: {', '.join(sorted(FACTORIES))}"
        )
    return factory(rest, data_dir)
