"""Several engines sharing one store and one manual clock, as separate processes would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from backends.api import Backend
from invoker import keys
from invoker.config import EngineConfig
from invoker.engine import Engine
from invoker.store import decode_invocation
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from tests.schedules import app

CONFIG = EngineConfig(recovery_grace_ms=1_000, outcome_poll_s=0.01, write_retries=0)


class Cluster:
    """``n`` engines on stores made by ``make`` (one store each, e.g. one SQLite file opened
    ``n`` times), all serving :mod:`tests.schedules.app` in process."""

    def __init__(self, make: Callable[[], Backend], n: int, clock: ManualClock) -> None:
        self.clock = clock
        self.backends = [make() for _ in range(n)]
        self.engines = [self._engine(b) for b in self.backends]

    def _engine(self, backend: Backend) -> Engine:
        engine = Engine(backend, self.clock, Transports(), CONFIG)
        engine.transports.asgi.mount("sched", app.app)
        return engine

    async def start(self) -> None:
        for engine in self.engines:
            await engine.start()
        await self.engines[0].register_deployment("asgi://sched")
        for engine in self.engines:
            await engine.refresh_registry()

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()
        for backend in self.backends:
            await backend.close()

    async def settle(self) -> None:
        """Every engine sweeps at once, then all work runs to quiescence."""
        for _ in range(100):
            await asyncio.gather(*(e.tick() for e in self.engines))
            tasks = [t for e in self.engines for t in e.pending()]
            if not tasks:
                await asyncio.sleep(0)
                if not any(e.pending() for e in self.engines):
                    return
                continue
            await asyncio.wait(tasks, timeout=5)

    async def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        await self.settle()

    async def invocations(self, service: str, handler: str) -> list[str]:
        """Ids of the stored invocations of ``service/handler``."""
        out = []
        for item in await self.backends[0].scan(keys.INV_PREFIX, keys.META):
            inv = decode_invocation(item.value)
            if inv.service == service and inv.handler == handler:
                out.append(inv.id)
        return out
