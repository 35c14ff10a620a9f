"""Fixtures: a whole runtime in process with the official SDK's handlers mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from backends.sqlite import SqliteBackend
from infra.testing import TestEnvironment, test_environment
from tests.invoker import sdk_app


@pytest.fixture(params=["memory", "sqlite"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestEnvironment]:
    """A runtime on each embedded backend with ``tests/invoker/sdk_app.py`` registered."""
    backend = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "db")
    sdk_app.calls.clear()
    async with test_environment(backend) as environment:
        await environment.mount("sdk", sdk_app.app)
        yield environment
