"""Admin routes of event subscriptions, with restate-server 1.7.12's shapes and statuses.

``GET /subscriptions`` (``{"subscriptions": [...]}``), ``POST /subscriptions``
(``{source, sink, options?}``: 201 with the subscription; 400 with ``restate_code`` META0009 for
a source or sink it cannot use), ``GET /subscriptions/{id}``, ``DELETE /subscriptions/{id}``
(202; 404 if unknown; 400 for a malformed id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoker.api import SubscriptionsApi
from invoker.subscriptions import MetaError

JsonBody = Callable[[Request], Awaitable[dict[str, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]


class SubscriptionEndpoints:
    """The subscription routes bound to one engine; ``json_body`` reads a JSON object body."""

    def __init__(self, engine: object, json_body: JsonBody) -> None:
        self.engine = cast(SubscriptionsApi, engine)
        self.json_body = json_body

    async def create(self, request: Request) -> Response:
        """``POST /subscriptions``."""
        try:
            sub = await self.engine.create_subscription(await self.json_body(request))
        except MetaError as exc:
            return JSONResponse(
                {"message": exc.message, "restate_code": exc.code}, status_code=exc.status
            )
        return JSONResponse(
            sub, status_code=201, headers={"location": f"subscriptions/{sub['id']}"}
        )

    async def list_all(self, request: Request) -> Response:
        """``GET /subscriptions``."""
        return JSONResponse({"subscriptions": await self.engine.list_subscriptions()})

    async def get(self, request: Request) -> Response:
        """``GET /subscriptions/{subscription}``."""
        return JSONResponse(await self.engine.get_subscription(request.path_params["subscription"]))

    async def delete(self, request: Request) -> Response:
        """``DELETE /subscriptions/{subscription}``."""
        await self.engine.delete_subscription(request.path_params["subscription"])
        return Response(status_code=202)

    def table(self) -> list[tuple[str, Endpoint, list[str]]]:
        """(path, endpoint, methods) of every route."""
        return [
            ("/subscriptions", self.list_all, ["GET"]),
            ("/subscriptions", self.create, ["POST"]),
            ("/subscriptions/{subscription}", self.get, ["GET"]),
            ("/subscriptions/{subscription}", self.delete, ["DELETE"]),
        ]
