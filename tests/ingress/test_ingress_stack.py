"""The ingress app's HTTP requests go straight to its one route, unless someone added
middleware, which then sees every request; lifespan still goes through Starlette."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from ingress.ingress_app import create_ingress_app
from restate_lambda.testing import Harness


class _Stamp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                message = {**message, "headers": [*headers, (b"x-stamped", b"1")]}
            await send(message)

        await self.app(scope, receive, stamped)


async def _get(app: ASGIApp, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        return await client.get(path)


async def test_requests_are_answered_with_and_without_added_middleware() -> None:
    async with Harness() as h:
        plain = create_ingress_app(h.engine)
        response = await _get(plain, "/restate/health")
        assert response.status_code == 200 and "x-stamped" not in response.headers
        missing = await _get(plain, "/NoSuchService/handler")
        assert missing.status_code == 404 and "message" in missing.json()

        wrapped = create_ingress_app(h.engine)
        wrapped.add_middleware(_Stamp)
        response = await _get(wrapped, "/restate/health")
        assert response.status_code == 200 and response.headers["x-stamped"] == "1"


async def test_lifespan_goes_through_starlette() -> None:
    async with Harness() as h:
        app = create_ingress_app(h.engine)
        sent: list[dict[str, object]] = []
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, object]:
            return incoming.pop(0)

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)  # type: ignore[arg-type]
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
