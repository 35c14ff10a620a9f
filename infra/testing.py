"""The runtime's own test environment: :class:`restate_lambda.testing.Harness` with the
signatures this repository's tests use (``mount(name, app)``, ``test_environment(backend)``).

Users: use :mod:`restate_lambda.testing` (documented, with a pytest plugin) instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from backends.api import Backend
from backends.memory import MemoryBackend
from invoker.config import EngineConfig
from restate_lambda.testing.in_process import Harness


class TestEnvironment(Harness):
    """A whole runtime in one event loop, driven by a manual clock."""

    __test__ = False  # not a pytest class

    def __init__(self, backend: Backend | None = None, config: EngineConfig | None = None) -> None:
        super().__init__(backend or MemoryBackend(), config=config)

    async def mount(self, name: str, app: Any) -> dict[str, Any]:  # type: ignore[override]
        """Serve ``app`` in process under ``name`` and register it as a deployment."""
        return await super().mount(app, name=name)


@asynccontextmanager
async def running_environment(
    backend: Backend | None = None, config: EngineConfig | None = None
) -> AsyncIterator[TestEnvironment]:
    """A started :class:`TestEnvironment`, closed on exit."""
    env = TestEnvironment(backend, config)
    await env.start()
    try:
        yield env
    finally:
        await env.close()


#: The former name (kept for callers); ``__test__`` keeps pytest from collecting it as a test
#: in modules that import it.
test_environment = running_environment
test_environment.__test__ = False  # type: ignore[attr-defined]


def ms(delta: timedelta) -> int:
    """Milliseconds of a timedelta."""
    return int(delta.total_seconds() * 1000)
