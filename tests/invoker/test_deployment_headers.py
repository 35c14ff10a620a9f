"""Headers a deployment is registered with go on the wire unchecked by the HTTP clients, so
registration refuses any that are not valid HTTP: no header injection into every request."""

from __future__ import annotations

import pytest

from backends.memory import MemoryBackend
from invoker.api import BadRequestError
from invoker.engine import Engine
from invoker.transport import Transports
from restate_lambda.clock import ManualClock
from tests.faults import app


async def _engine() -> Engine:
    engine = Engine(MemoryBackend(), ManualClock(), Transports())
    engine.transports.asgi.mount("faults", app.app)
    await engine.start()
    return engine


@pytest.mark.parametrize(
    "headers",
    [
        {"x-token": "a\r\nx-injected: 1"},
        {"x-token": "a\nb"},
        {"x-token": "nul\x00"},
        {"x-token": " padded"},
        {"x-token": "caf\u00e9"},
        {"bad name": "v"},
        {"x-token:": "v"},
        {":path": "/evil"},
        {"": "v"},
    ],
)
async def test_invalid_additional_headers_are_refused_and_nothing_is_registered(
    headers: dict[str, str],
) -> None:
    engine = await _engine()
    try:
        with pytest.raises(BadRequestError) as info:
            await engine.register_deployment("asgi://faults", additional_headers=headers)
        assert info.value.status == 400
        assert "additional header" in info.value.message
        assert [] == (await engine.list_deployments())
    finally:
        await engine.close()


async def test_valid_additional_headers_register() -> None:
    engine = await _engine()
    try:
        headers = {"Authorization": "Bearer abc.def", "x-tab": "a\tb"}
        info, created = await engine.register_deployment(
            "asgi://faults", additional_headers=headers
        )
        assert created
        assert info["additional_headers"] == headers
    finally:
        await engine.close()
