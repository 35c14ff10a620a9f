"""The admin HTTP API (restate-server 1.7's port 9070) over an :class:`EngineApi`.

Every route is served unprefixed and under ``/v2``, ``/v3`` and ``/v4`` (the CLI uses
``/v4/…`` after reading ``GET /version``). Errors are ``{"message", "restate_code": null}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from ingress.admin_models import (
    deployment_detail_json,
    deployment_summary_json,
    registration_json,
    service_json,
)
from ingress.admin_query import QueryHttpError, answer_query, query_error
from ingress.admin_schedules import ScheduleEndpoints
from ingress.admin_security import AdminGuard, AdminSecurity
from ingress.admin_subscriptions import SubscriptionEndpoints
from ingress.errors import IngressHttpError
from ingress.ids import IdError, check_invocation_id
from ingress.openapi import openapi_document
from ingress.request_body import read_body
from invoker.api import EngineApi, EngineError, LifecycleApi

log = logging.getLogger("restate_lambda.admin")

SERVER_VERSION = "1.7.12"
MIN_ADMIN_API_VERSION = 2
MAX_ADMIN_API_VERSION = 4
_API_PREFIXES = ("/v2", "/v3", "/v4")

InvocationAction = Literal["cancel", "kill", "purge", "purge-journal", "pause", "resume"]
#: restate-server 1.7.12 answers cancel with 202 and the others with 200 (pause: 202 while an
#: attempt runs, as the pause then takes effect when it ends).
_ACTION_STATUS: dict[str, int] = {
    "cancel": 202,
    "kill": 200,
    "purge": 200,
    "purge-journal": 200,
    "pause": 200,
    "resume": 200,
    "restart-as-new": 200,
}
_REGISTER_FLAGS = ("use_http_11", "force", "breaking", "dry_run")

Endpoint = Callable[[Request], Awaitable[Response]]


class AdminHttpError(Exception):
    """An admin error answered as ``{"message", "restate_code": null}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def admin_error(status: int, message: str) -> JSONResponse:
    """The admin API's error body."""
    log.info("admin error %d: %s", status, message)
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn engine/admin errors into JSON answers; never leak a traceback."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AdminHttpError as exc:
            return admin_error(exc.status, exc.message)
        except EngineError as exc:
            return admin_error(exc.status, exc.message)
        except ClientDisconnect:
            log.info(
                "client disconnected before sending the whole body: %s %s",
                request.method,
                request.url.path,
            )
            return admin_error(400, "client disconnected")
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.url.path)
            return admin_error(500, "internal server error")

    return wrapper


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) as admin JSON errors."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return admin_error(405, f"method {request.method} not allowed on {request.url.path}")
    return admin_error(status, "not found" if status == 404 else "bad request")


#: Largest admin request body: registrations and queries are small.
MAX_ADMIN_BODY_BYTES = 1024 * 1024


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, MAX_ADMIN_BODY_BYTES)
    except IngressHttpError as exc:
        raise AdminHttpError(exc.status, f"request body over {MAX_ADMIN_BODY_BYTES} bytes") from exc
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminHttpError(400, f"Failed to parse the request body as JSON: {exc}") from exc
    except RecursionError as exc:
        raise AdminHttpError(
            400, "Failed to parse the request body as JSON: nested too deeply"
        ) from exc
    if not isinstance(body, dict):
        raise AdminHttpError(422, "Failed to deserialize the JSON body: expected an object")
    return body


def _check_deployment_uri(uri: str) -> None:
    """400 unless ``uri`` is an absolute ``http(s)://host[:port]/...`` URL."""
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises ValueError for a malformed port
        host = parts.hostname
    except ValueError as exc:
        raise AdminHttpError(400, f"Invalid deployment uri '{uri}': {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise AdminHttpError(
            400, f"Invalid deployment uri '{uri}': expected http(s)://HOST[:PORT][/PATH]"
        )
    if port == 0:
        raise AdminHttpError(400, f"Invalid deployment uri '{uri}': port 0")


def _register_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``RegisterDeploymentRequest`` (``uri`` xor ``arn``) into engine kwargs."""
    uri, arn = body.get("uri"), body.get("arn")
    if (uri is None) == (arn is None) or not isinstance(uri or arn, str):
        raise AdminHttpError(
            422,
            "Failed to deserialize the JSON body into the target type: data did not match "
            "any variant of untagged enum RegisterDeploymentRequest",
        )
    if isinstance(uri, str):
        _check_deployment_uri(uri)
    headers = body.get("additional_headers")
    if headers is not None and (
        not isinstance(headers, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise AdminHttpError(422, "additional_headers must be an object of strings")
    kwargs: dict[str, Any] = {"uri": uri, "arn": arn, "additional_headers": headers}
    for flag in _REGISTER_FLAGS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise AdminHttpError(422, f"{flag} must be a boolean")
        kwargs[flag] = value
    role = body.get("assume_role_arn")
    if role is not None and not isinstance(role, str):
        raise AdminHttpError(422, "assume_role_arn must be a string")
    kwargs["assume_role_arn"] = role
    return kwargs


def _query_flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise AdminHttpError(400, f"Invalid query parameter `{name}`: expected true or false")


class _AdminEndpoints:
    """The admin API's endpoints bound to one engine."""

    def __init__(self, engine: EngineApi, ingress_endpoint: str) -> None:
        self.engine = engine
        self.ingress_endpoint = ingress_endpoint

    async def health(self, request: Request) -> Response:
        """``GET /health``: 200, empty body."""
        return Response(status_code=200)

    async def version(self, request: Request) -> Response:
        """``GET /version``: what the CLI reads before anything else."""
        return JSONResponse(
            {
                "version": SERVER_VERSION,
                "min_admin_api_version": MIN_ADMIN_API_VERSION,
                "max_admin_api_version": MAX_ADMIN_API_VERSION,
                "ingress_endpoint": self.ingress_endpoint,
                "features": {},
            }
        )

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the OpenAPI description of the ingress and admin APIs."""
        admin_url = str(request.base_url).rstrip("/") or "/"
        return JSONResponse(openapi_document(self.ingress_endpoint.rstrip("/"), admin_url))

    async def register_deployment(self, request: Request) -> Response:
        """``POST /deployments``: 201 when created, 200 when it was already registered."""
        kwargs = _register_kwargs(await _json_body(request))
        deployment, created = await self.engine.register_deployment(**kwargs)
        body = registration_json(deployment)
        return JSONResponse(
            body,
            status_code=201 if created else 200,
            headers={"location": f"deployments/{body['id']}"},
        )

    async def list_deployments(self, request: Request) -> Response:
        """``GET /deployments``."""
        deployments = await self.engine.list_deployments()
        return JSONResponse({"deployments": [deployment_summary_json(d) for d in deployments]})

    async def get_deployment(self, request: Request) -> Response:
        """``GET /deployments/{deployment}``."""
        deployment = await self.engine.get_deployment(request.path_params["deployment"])
        return JSONResponse(deployment_detail_json(deployment))

    async def delete_deployment(self, request: Request) -> Response:
        """``DELETE /deployments/{deployment}?force=``: 202; 400 with ``force=false``.

        restate-server 1.7 answers 501 there (it does not implement draining removal either);
        a 4xx says the same without a server error.
        """
        force = _query_flag(request, "force", True)
        if not force:
            raise AdminHttpError(
                400, "only forced deployment removal is supported: leave out force=false"
            )
        await self.engine.remove_deployment(request.path_params["deployment"], force=True)
        return Response(status_code=202)

    async def list_services(self, request: Request) -> Response:
        """``GET /services``."""
        services = await self.engine.list_services()
        return JSONResponse({"services": [service_json(s) for s in services]})

    async def get_service(self, request: Request) -> Response:
        """``GET /services/{service}``."""
        return JSONResponse(
            service_json(await self.engine.get_service(request.path_params["service"]))
        )

    async def list_handlers(self, request: Request) -> Response:
        """``GET /services/{service}/handlers``."""
        service = service_json(await self.engine.get_service(request.path_params["service"]))
        return JSONResponse({"handlers": service["handlers"]})

    async def get_handler(self, request: Request) -> Response:
        """``GET /services/{service}/handlers/{handler}``."""
        name, handler = request.path_params["service"], request.path_params["handler"]
        service = service_json(await self.engine.get_service(name))
        for entry in service["handlers"]:
            if entry["name"] == handler:
                return JSONResponse(entry)
        raise AdminHttpError(
            404, f"The requested handler '{handler}' on service '{name}' does not exist"
        )

    async def _manage(
        self, invocation_id: str, action: str, params: dict[str, str] | None = None
    ) -> Response:
        if action not in _ACTION_STATUS:
            raise AdminHttpError(404, f"Unknown invocation operation '{action}'")
        try:
            check_invocation_id(invocation_id)
        except IdError as exc:
            raise AdminHttpError(
                400, f"The request field 'invocation_id' is invalid. Reason: {exc}"
            ) from exc
        params = params or {}
        lifecycle = cast(LifecycleApi, self.engine)
        if action == "restart-as-new":
            raw_from = params.get("from")
            if raw_from is not None and not raw_from.isdigit():
                raise AdminHttpError(400, "Invalid query parameter `from`: expected a number")
            new_id = await lifecycle.restart_as_new(
                invocation_id, None if raw_from is None else int(raw_from), params.get("deployment")
            )
            return JSONResponse({"new_invocation_id": new_id})
        if action == "resume" and params.get("deployment"):
            await lifecycle.resume_invocation(invocation_id, params["deployment"])
            return Response(status_code=200)
        accepted = await self.engine.manage_invocation(
            invocation_id, cast(InvocationAction, action)
        )
        return Response(status_code=202 if accepted else _ACTION_STATUS[action])

    async def manage_invocation(self, request: Request) -> Response:
        """``PATCH /invocations/{invocation_id}/{cancel|kill|purge|purge-journal|pause|resume|
        restart-as-new}`` (``restart-as-new?from=&deployment=``, ``resume?deployment=``)."""
        return await self._manage(
            request.path_params["invocation_id"],
            request.path_params["action"],
            dict(request.query_params),
        )

    async def delete_invocation(self, request: Request) -> Response:
        """Deprecated ``DELETE /invocations/{invocation_id}?mode=cancel|kill|purge``."""
        mode = request.query_params.get("mode", "cancel")
        if mode not in ("cancel", "kill", "purge"):
            raise AdminHttpError(400, f"Invalid query parameter `mode`: {mode!r}")
        await self._manage(request.path_params["invocation_id"], mode)
        return Response(status_code=202)

    async def list_invocations(self, request: Request) -> Response:
        """``GET /invocations?all=``: invocation rows, newest first (restate-lambda extension;
        Restate's CLI reads the same rows through SQL)."""
        include = _query_flag(request, "all", False)
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError as exc:
            raise AdminHttpError(400, "Invalid query parameter `limit`") from exc
        rows = await self.engine.list_invocations(include_completed=include, limit=limit)
        return JSONResponse({"invocations": rows})

    async def describe_invocation(self, request: Request) -> Response:
        """``GET /invocations/{invocation_id}``: one row and its journal (extension)."""
        return JSONResponse(
            await self.engine.describe_invocation(request.path_params["invocation_id"])
        )

    async def query(self, request: Request) -> Response:
        """``POST /query`` ``{"query": SQL}``: an Arrow IPC stream, or JSON rows for
        ``accept: application/json`` (see :mod:`ingress.admin_query`); 400 for bad SQL."""
        body = await _json_body(request)
        query = body.get("query")
        if not isinstance(query, str):
            raise AdminHttpError(422, "Failed to deserialize the JSON body: missing `query`")
        try:
            return await answer_query(self.engine, query, request.headers.get("accept"))
        except QueryHttpError as exc:
            return query_error(exc.status, exc.message)

    async def modify_state(self, request: Request) -> Response:
        """``POST /services/{service}/state`` ``{object_key, new_state: {k: [bytes]}, version?}``:
        202 once the state is replaced; 409 if the key is busy or ``version`` is stale."""
        body = await _json_body(request)
        key, version, raw_state = body.get("object_key"), body.get("version"), body.get("new_state")
        if not isinstance(key, str) or not isinstance(raw_state, dict):
            raise AdminHttpError(
                422, "Failed to deserialize the JSON body: expected `object_key` and `new_state`"
            )
        if version is not None and not isinstance(version, str):
            raise AdminHttpError(422, "Failed to deserialize the JSON body: `version` is a string")
        if body.get("scope") is not None:
            raise AdminHttpError(400, "scoped state is not supported")
        new_state: dict[str, bytes] = {}
        for name, value in raw_state.items():
            if not isinstance(value, list) or not all(
                isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value
            ):
                raise AdminHttpError(
                    422, f"Failed to deserialize the JSON body: new_state.{name} is not bytes"
                )
            new_state[name] = bytes(value)
        await self.engine.modify_state(request.path_params["service"], key, new_state, version)
        return Response(status_code=202)

    def routes(self) -> list[BaseRoute]:
        """The unprefixed routes."""
        table: list[tuple[str, Endpoint, list[str]]] = [
            ("/health", self.health, ["GET"]),
            ("/version", self.version, ["GET"]),
            ("/openapi.json", self.openapi, ["GET"]),
            ("/deployments", self.register_deployment, ["POST"]),
            ("/deployments", self.list_deployments, ["GET"]),
            ("/deployments/{deployment}", self.get_deployment, ["GET"]),
            ("/deployments/{deployment}", self.delete_deployment, ["DELETE"]),
            ("/services", self.list_services, ["GET"]),
            ("/services/{service}", self.get_service, ["GET"]),
            ("/services/{service}/state", self.modify_state, ["POST"]),
            ("/services/{service}/handlers", self.list_handlers, ["GET"]),
            ("/services/{service}/handlers/{handler}", self.get_handler, ["GET"]),
            ("/invocations", self.list_invocations, ["GET"]),
            ("/invocations/{invocation_id}", self.describe_invocation, ["GET"]),
            ("/invocations/{invocation_id}/{action}", self.manage_invocation, ["PATCH"]),
            ("/invocations/{invocation_id}", self.delete_invocation, ["DELETE"]),
            ("/query", self.query, ["POST"]),
            *ScheduleEndpoints(self.engine, _json_body).table(),
            *SubscriptionEndpoints(self.engine, _json_body).table(),
        ]
        return [
            Route(path, _guarded(endpoint), methods=methods) for path, endpoint, methods in table
        ]


def create_admin_app(
    engine: EngineApi,
    *,
    ingress_endpoint: str = "http://127.0.0.1:8080/",
    security: AdminSecurity | None = None,
) -> AdminGuard:
    """The admin ASGI app; ``ingress_endpoint`` is what ``GET /version`` advertises.

    ``security`` (see :mod:`ingress.admin_security`) defaults to no token and no Host check,
    but Origin and JSON-only checks: right for in-process use and behind an IAM-authorized
    Function URL. A server listening on a socket passes :meth:`AdminSecurity.for_bind`.
    """
    routes = _AdminEndpoints(engine, ingress_endpoint).routes()
    # No trailing-slash redirects: Starlette's would send Location with the decoded path
    # (``/services/..%2F`` -> ``/services/..``); an unknown path is a plain JSON 404.
    mounts: list[BaseRoute] = [
        Mount(prefix, app=Router(routes=routes, redirect_slashes=False)) for prefix in _API_PREFIXES
    ]
    # The web UI (ingress/ui): /ui (static shell and assets, open) and /ui/views/* (token).
    from ingress.ui.views import PUBLIC_PATHS, ui_routes

    mounts += ui_routes(engine)
    app = Starlette(
        routes=[*routes, *mounts],
        exception_handlers={404: _http_exception, 405: _http_exception},
    )
    app.router.redirect_slashes = False
    return AdminGuard(app, security or AdminSecurity(), public_paths=PUBLIC_PATHS)
