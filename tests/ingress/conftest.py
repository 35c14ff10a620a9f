"""Fixtures: the fake engine and httpx clients over the ASGI apps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ingress.admin_app import create_admin_app
from ingress.ingress_app import create_ingress_app
from invoker.api import EngineApi
from tests.ingress.fakes import FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    """A fresh fake engine."""
    return FakeEngine()


@pytest.fixture
async def client(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the ingress app (body limit 1 KiB)."""
    api: EngineApi = engine
    app = create_ingress_app(api, max_body_bytes=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as c:
        yield c


@pytest.fixture
async def admin(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the admin app."""
    app = create_admin_app(engine, ingress_endpoint="http://127.0.0.1:18080/")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        yield c


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz suite's summary line (tests/ingress/test_fuzz.py), when it ran."""
    from tests.ingress.test_fuzz import STATS

    if STATS.requests:
        terminalreporter.write_sep("-", "fuzz summary")
        terminalreporter.write_line(STATS.line())
        terminalreporter.write_line(STATS.detail())
