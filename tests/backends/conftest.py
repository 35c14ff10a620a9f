"""Fixtures for the backend conformance suite.

Every test that takes ``backend`` runs once per entry of :data:`BACKENDS`. Adding a backend is one
entry there (an async context manager factory taking a scratch directory), e.g. later::

    "dynamodb": _dynamodb,   # moto mock_aws or DynamoDB Local, table provisioned by infra
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from backends.api import Backend
from backends.faults import FaultPlan, FaultyBackend
from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from tests.support.aws import DYNAMODB_BACKENDS


@asynccontextmanager
async def _memory(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = MemoryBackend()
    try:
        yield backend
    finally:
        await backend.close()


@asynccontextmanager
async def _sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = SqliteBackend(tmp_path / "store.db")
    try:
        yield backend
    finally:
        await backend.close()


@asynccontextmanager
async def _sqlite_reader_threads(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = SqliteBackend(tmp_path / "store.db", readers=2, writer="thread")
    try:
        yield backend
    finally:
        await backend.close()


@asynccontextmanager
async def _memory_through_faults(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = FaultyBackend(MemoryBackend(), FaultPlan.counting(count_reads=True), close_inner=True)
    try:
        yield backend
    finally:
        await backend.close()


#: Backend name -> factory of an open, empty backend. The conformance suite runs against each.
BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    # reads on a thread pool and commits on a writer thread, not on the event loop
    "sqlite-reader-threads": _sqlite_reader_threads,
    # the fault-injecting wrapper without faults must be transparent
    "memory-faulty": _memory_through_faults,
}
# "dynamodb" (DynamoDB Local) and "dynamodb-s3" (values > 4 bytes offloaded to moto S3); they
# start their servers on first use and skip when java/npm are missing. See tests/support/aws.py.
BACKENDS.update(DYNAMODB_BACKENDS)


def make_backend(kind: str, tmp_path: Path) -> AbstractAsyncContextManager[Backend]:
    """An empty backend of ``kind`` using ``tmp_path`` for any files."""
    return BACKENDS[kind](tmp_path)


@pytest.fixture(params=list(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An empty backend, once per entry of :data:`BACKENDS`."""
    async with make_backend(request.param, tmp_path) as b:
        yield b
