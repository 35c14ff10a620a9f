"""An in-process runtime for tests: engine + backend + ingress, with a manual clock.

``TestEnvironment`` mounts handler apps (restate-sdk's or restate_lambda's ASGI apps) in
process, serves the ingress and admin APIs through ``httpx.ASGITransport`` and lets tests move
time forward with :meth:`TestEnvironment.advance` instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx

from backends.api import Backend
from backends.memory import MemoryBackend
from ingress.admin_app import create_admin_app
from ingress.ingress_app import create_ingress_app
from invoker.config import EngineConfig
from invoker.engine import RuntimeEngine
from invoker.transport import Transports
from restate_lambda.clock import ManualClock, SystemClock


class TestEnvironment:
    """A whole runtime in one event loop, driven by a manual clock."""

    __test__ = False  # not a pytest class

    def __init__(self, backend: Backend | None = None, config: EngineConfig | None = None) -> None:
        self.clock = ManualClock(SystemClock().now_ms())
        self.backend = backend or MemoryBackend()
        self.engine = RuntimeEngine(self.backend, self.clock, Transports(), config)
        self.ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_ingress_app(self.engine)),
            base_url="http://ingress",
            timeout=30,
        )
        self.admin = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_admin_app(self.engine)),
            base_url="http://admin",
            timeout=30,
        )

    async def mount(self, name: str, app: Any) -> dict[str, Any]:
        """Serve ``app`` in process and register it as a deployment."""
        uri = self.engine.transports.asgi.mount(name, app)
        deployment, _ = await self.engine.register_deployment(uri)
        return deployment

    async def settle(self, rounds: int = 200) -> None:
        """Let every in-flight attempt, effect and due timer run to quiescence."""
        for _ in range(rounds):
            await self.engine.tick()
            tasks = self.engine.pending()
            if not tasks:
                await asyncio.sleep(0)
                if not self.engine.pending():
                    return
                continue
            await asyncio.wait(tasks, timeout=5)
        raise TimeoutError("the runtime did not settle")

    async def advance(self, delta: timedelta | int) -> None:
        """Move time forward, fire what became due, and settle."""
        self.clock.advance(delta)
        await self.settle()

    async def close(self) -> None:
        """Stop the engine and close clients."""
        await self.ingress.aclose()
        await self.admin.aclose()
        await self.engine.close()
        await self.backend.close()


@asynccontextmanager
async def test_environment(
    backend: Backend | None = None, config: EngineConfig | None = None
) -> AsyncIterator[TestEnvironment]:
    """Context manager around :class:`TestEnvironment`."""
    env = TestEnvironment(backend, config)
    await env.engine.start()
    try:
        yield env
    finally:
        await env.close()


def ms(delta: timedelta) -> int:
    """Milliseconds of a timedelta."""
    return int(delta.total_seconds() * 1000)
