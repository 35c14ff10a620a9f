"""Admin routes of cron schedules (a restate-lambda extension; restate-server has none).

============================================  ===================================================
``GET /schedules``                            ``{"schedules": [...]}``
``POST /schedules``                           ``{id, cron, target, timezone?, body?,
                                              missed_ticks?: "catch-up"|"skip", max_catch_up?,
                                              paused?}``: 201 created, 200 when the same
                                              definition exists, 409 when a different one does
``GET /schedules/{id}``                       one schedule (404 if unknown)
``DELETE /schedules/{id}``                    202
``PATCH /schedules/{id}/pause`` / ``resume``  200 with the schedule
============================================  ===================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoker.api import NotFoundError, SchedulesApi

JsonBody = Callable[[Request], Awaitable[dict[str, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]


class ScheduleEndpoints:
    """The schedule routes bound to one engine; ``json_body`` reads a JSON object body."""

    def __init__(self, engine: object, json_body: JsonBody) -> None:
        self.engine = cast(SchedulesApi, engine)
        self.json_body = json_body

    async def create(self, request: Request) -> Response:
        """``POST /schedules``."""
        schedule, created = await self.engine.create_schedule(await self.json_body(request))
        return JSONResponse(
            schedule,
            status_code=201 if created else 200,
            headers={"location": f"schedules/{schedule['id']}"},
        )

    async def list_all(self, request: Request) -> Response:
        """``GET /schedules``."""
        return JSONResponse({"schedules": await self.engine.list_schedules()})

    async def get(self, request: Request) -> Response:
        """``GET /schedules/{schedule}``."""
        return JSONResponse(await self.engine.get_schedule(request.path_params["schedule"]))

    async def delete(self, request: Request) -> Response:
        """``DELETE /schedules/{schedule}``."""
        await self.engine.delete_schedule(request.path_params["schedule"])
        return Response(status_code=202)

    async def change(self, request: Request) -> Response:
        """``PATCH /schedules/{schedule}/pause|resume``."""
        op = request.path_params["op"]
        if op not in ("pause", "resume"):
            raise NotFoundError(f"Unknown schedule operation '{op}'")
        schedule = await self.engine.pause_schedule(request.path_params["schedule"], op == "pause")
        return JSONResponse(schedule)

    def table(self) -> list[tuple[str, Endpoint, list[str]]]:
        """(path, endpoint, methods) of every route."""
        return [
            ("/schedules", self.list_all, ["GET"]),
            ("/schedules", self.create, ["POST"]),
            ("/schedules/{schedule}", self.get, ["GET"]),
            ("/schedules/{schedule}", self.delete, ["DELETE"]),
            ("/schedules/{schedule}/{op}", self.change, ["PATCH"]),
        ]
