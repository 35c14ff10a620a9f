"""The ingress HTTP API (restate-server 1.7's port 8080) over an :class:`EngineApi`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ingress.content_type import InputValidationError, validate_input
from ingress.durations import DurationError, parse_delay_ms
from ingress.errors import IngressHttpError, error_response, log
from ingress.ids import IdError, awakeable_invocation
from ingress.limits import IngressLimits
from ingress.paths import (
    LEGACY_BAD_PATH,
    AwakeableRoute,
    ByIdempotencyKey,
    ByWorkflow,
    CheckpointRoute,
    HealthRoute,
    IngressRoute,
    InvocationRef,
    InvokeRoute,
    JsonTargetRoute,
    LegacyInvokeRoute,
    ReadMode,
    ReadRoute,
    parse_route,
    split_raw_path,
)
from ingress.request_body import parse_json_object, read_body
from ingress.responses import outcome_response, send_response
from ingress.targets import ref_from_json, resolve_invocation_id
from ingress.visibility import refuse_private_invocation, refuse_private_ref
from invoker.api import (
    EngineApi,
    EngineError,
    InvokeRequest,
    NotFoundError,
    StillRunningError,
    Target,
)
from restate_lambda.checkpoint import HEADER_JOURNAL_INDEX, HEADER_TOKEN

_INVOKE_METHODS = frozenset({"GET", "POST"})
#: Headers restate-server neither persists nor forwards to the handler (plus hop-by-hop ones).
_DROPPED_HEADERS = frozenset(
    {
        "connection",
        "host",
        "idempotency-key",
        "idempotency-expires",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        # Credentials for the ingress itself (SigV4 with IngressAuth=AWS_IAM, a JWT with
        # IngressAuth=JWT): restate-server forwards and persists them; we keep them out of the
        # journal and away from deployments.
        "authorization",
        "proxy-authorization",
        "x-amz-security-token",
    }
)


def _method_not_allowed() -> IngressHttpError:
    return IngressHttpError(405, "method not allowed")


def forwarded_headers(request: Request, path: str) -> list[tuple[str, str]]:
    """The request headers handed to the handler, plus ``x-restate-ingress-path``."""
    headers = [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() not in _DROPPED_HEADERS
    ]
    headers.append(("x-restate-ingress-path", path))
    return headers


def url_path(scope: Any) -> str:
    """The request's path as ``request.url.path`` gives it (``?``, ``#`` and ``\\`` escaped),
    without building the whole URL (host, query) for it."""
    path: str = scope["path"]
    if "?" in path or "#" in path or "\\" in path:
        path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return path


class _IngressHandler:
    """Routes one request to the engine; never lets an exception escape."""

    def __init__(self, engine: EngineApi, limits: IngressLimits) -> None:
        self.engine = engine
        self.limits = limits
        self.max_body_bytes = limits.max_body_bytes

    async def handle(self, request: Request) -> Response:
        """Answer one ingress request."""
        try:
            raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
            self.limits.check_request(
                request.scope.get("headers", []), raw_path, request.scope.get("query_string", b"")
            )
            route = parse_route(split_raw_path(raw_path), request.method)
            self._check_keys(route, request)
            return await self._dispatch(route, request)
        except IngressHttpError as exc:
            return error_response(
                exc.status, exc.message, source=exc.source, invocation_id=exc.invocation_id
            )
        except StillRunningError as exc:
            return error_response(
                exc.status, exc.message, source="ingress", invocation_id=exc.invocation_id
            )
        except EngineError as exc:
            return error_response(exc.status, exc.message, source="ingress")
        except ClientDisconnect:
            # Nobody reads the answer; not an error of ours, so no traceback.
            log.info(
                "client disconnected before sending the whole body: %s %s",
                request.method,
                request.url.path,
            )
            return error_response(400, "client disconnected", source="ingress")
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.url.path)
            return error_response(500, "internal server error", source="ingress")

    def _check_keys(self, route: IngressRoute, request: Request) -> None:
        """400 for a workflow key or idempotency key over the limit (call keys: :meth:`_invoke`)."""
        check = self.limits.check_key
        check("idempotency key", request.headers.get("idempotency-key"))
        match route:
            case ReadRoute(ByWorkflow(_, key)):
                check("workflow key", key)
            case ReadRoute(ByIdempotencyKey(target, idempotency_key)):
                check("key", target.key)
                check("idempotency key", idempotency_key)

    async def _dispatch(self, route: IngressRoute, request: Request) -> Response:
        match route:
            case HealthRoute():
                return JSONResponse({"services": []})
            case LegacyInvokeRoute(segments):
                return await self._invoke(await self._resolve_legacy(segments), request)
            case InvokeRoute():
                return await self._invoke(route, request)
            case ReadRoute(ref, mode):
                if request.method != "GET":
                    raise _method_not_allowed()
                return await self._read(ref, mode)
            case JsonTargetRoute(mode):
                return await self._json_target(mode, request)
            case AwakeableRoute(awakeable_id, action):
                return await self._awakeable(awakeable_id, action, request)
            case CheckpointRoute():
                return await self._checkpoint(request)
        raise AssertionError(f"unhandled route {route!r}")  # pragma: no cover

    async def _resolve_legacy(self, segments: tuple[str, ...]) -> InvokeRoute:
        """Use the service type to tell ``/Svc/h/send`` from ``/Obj/key/h``."""
        try:
            try:
                service_type = self.engine.service_type(segments[0])
            except NotFoundError:
                if not await self.engine.refresh_registry():
                    raise
                service_type = self.engine.service_type(segments[0])
        except EngineError as exc:
            raise IngressHttpError(exc.status, exc.message) from exc
        parts = list(segments)
        send = False
        keyed = service_type != "Service"
        if len(parts) == (4 if keyed else 3) and parts[-1] == "send":
            send = True
            parts.pop()
        if keyed and len(parts) == 3:
            return InvokeRoute(Target(parts[0], parts[2], key=parts[1]), send)
        if not keyed and len(parts) == 2:
            return InvokeRoute(Target(parts[0], parts[1]), send)
        raise IngressHttpError(400, LEGACY_BAD_PATH)

    def _delay_ms(self, request: Request, send: bool) -> int | None:
        if not request.scope.get("query_string"):
            return None
        delay = request.query_params.get("delay")
        if delay is None:
            return None
        if not send:
            raise IngressHttpError(
                400,
                "cannot use the delay query parameter with calls. "
                "The delay is supported only with sends",
            )
        try:
            return parse_delay_ms(delay)
        except DurationError as exc:
            raise IngressHttpError(
                400, f"bad delay query parameter, must be a ISO8601 duration: {exc}"
            ) from exc

    async def _invoke(self, route: InvokeRoute, request: Request) -> Response:
        if request.method not in _INVOKE_METHODS:
            raise _method_not_allowed()
        delay_ms = self._delay_ms(request, route.send)
        target = route.target
        self.limits.check_key("key", target.key)
        try:
            self.engine.is_ingress_reachable(target)
        except NotFoundError:
            # Registered through another engine on the same store? One read tells.
            if not await self.engine.refresh_registry():
                raise
            self.engine.is_ingress_reachable(target)
        rules = self.engine.handler_input(target)
        body = await read_body(request, self.max_body_bytes)
        content_type = request.headers.get("content-type")
        try:
            validate_input(rules, body, content_type)
        except InputValidationError as exc:
            raise IngressHttpError(400, str(exc)) from exc
        invoke = InvokeRequest(
            target=target,
            body=body,
            headers=forwarded_headers(request, url_path(request.scope)),
            content_type=content_type,
            idempotency_key=request.headers.get("idempotency-key") or None,
            delay_ms=delay_ms,
        )
        if route.send:
            return send_response(await self.engine.send(invoke))
        return outcome_response(await self.engine.call(invoke))

    async def _visible_id(self, ref: InvocationRef) -> str:
        """The id ``ref`` designates; 400 if it belongs to a private service or handler."""
        invocation_id = resolve_invocation_id(self.engine, ref)
        await refuse_private_ref(self.engine, ref, invocation_id)
        return invocation_id

    async def _read(self, ref: InvocationRef, mode: ReadMode) -> Response:
        invocation_id = await self._visible_id(ref)
        if mode == "output":
            return outcome_response(await self.engine.output(invocation_id))
        try:
            outcome = await self.engine.attach(invocation_id)
        except EngineError as exc:
            # restate-server reports a failed attach as coming from the invocation.
            raise IngressHttpError(
                exc.status, exc.message, source="invocation", invocation_id=invocation_id
            ) from exc
        return outcome_response(outcome)

    async def _json_target(self, mode: str, request: Request) -> Response:
        body = parse_json_object(await read_body(request, self.max_body_bytes), "lookup")
        ref = ref_from_json(body)
        if mode == "lookup":
            return JSONResponse({"invocationId": await self._visible_id(ref)})
        return await self._read(ref, "attach" if mode == "attach" else "output")

    async def _checkpoint(self, request: Request) -> Response:
        """``POST /restate-lambda/checkpoint``: a handler makes its steps durable in the middle
        of an attempt (see :mod:`restate_lambda.checkpoint`)."""
        if request.method != "POST":
            raise _method_not_allowed()
        headers = request.headers
        invocation_id = headers.get("x-restate-invocation-id")
        token = headers.get(HEADER_TOKEN)
        index = headers.get(HEADER_JOURNAL_INDEX, "")
        if not invocation_id or not token or not index.isdigit() or len(index) > 12:
            raise IngressHttpError(
                400,
                f"a checkpoint needs the headers x-restate-invocation-id, {HEADER_TOKEN} and "
                f"{HEADER_JOURNAL_INDEX} (a number)",
            )
        body = await read_body(request, self.max_body_bytes)
        reply = await self.engine.checkpoint(invocation_id, token, int(index), body)
        content_type = headers.get("content-type", "application/vnd.restate.invocation.v5")
        return Response(reply, status_code=200, media_type=content_type)

    async def _awakeable(self, awakeable_id: str, action: str, request: Request) -> Response:
        if request.method != "POST":
            raise _method_not_allowed()
        try:
            invocation_id, _signal = awakeable_invocation(awakeable_id)
        except IdError as exc:
            raise IngressHttpError(400, f"bad awakeable id '{awakeable_id}': {exc}") from exc
        await refuse_private_invocation(self.engine, invocation_id)
        body = await read_body(request, self.max_body_bytes)
        if action == "resolve":
            await self.engine.resolve_awakeable(awakeable_id, body)
        else:
            await self.engine.reject_awakeable(awakeable_id, body.decode("utf-8", "replace"))
        return Response(status_code=202)


class _EveryPath(BaseRoute):
    """A route matching every HTTP request, whatever its path or method.

    ``Route("/{path:path}")`` does not: its pattern stops at a newline (``%0A``), and such a
    request got Starlette's plain-text 404 instead of a JSON error.
    """

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Every HTTP request."""
        return (Match.FULL, {}) if scope["type"] == "http" else (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """No named routes."""
        raise NotImplementedError("the ingress has no named routes")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request (the endpoint answers every error itself, so Starlette's
        exception-to-response wrapping has nothing to do here)."""
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


class _IngressStarlette(Starlette):
    """Starlette whose HTTP requests go straight to the ingress's one route.

    Its default middleware (a 500 page for an exception that escapes, ``HTTPException``
    responses) and the router have nothing to do for them: the endpoint answers every error with
    a JSON body itself. Each of those layers wraps ``send`` in a closure and costs an await per
    message; skipped, a call costs about 3 % less of the runtime's CPU (py-spy, counter adds).
    Lifespan and websocket scopes still take the usual way.
    """

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack, with HTTP requests short-cut to the route."""
        usual = super().build_middleware_stack()
        if self.user_middleware:
            return usual  # middleware someone added sees every request
        (route,) = self.router.routes

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                await route.handle(scope, receive, send)
            else:
                await usual(scope, receive, send)

        return app


def create_ingress_app(
    engine: EngineApi,
    *,
    max_body_bytes: int | None = None,
    limits: IngressLimits | None = None,
) -> Starlette:
    """The ingress ASGI app: calls, sends, attach/output, awakeables, health.

    ``limits`` bound each request (default :class:`IngressLimits`); ``max_body_bytes``, when
    given, overrides its body limit.
    """
    limits = limits or IngressLimits()
    if max_body_bytes is not None:
        limits = replace(limits, max_body_bytes=max_body_bytes)
    handler = _IngressHandler(engine, limits)
    app = _IngressStarlette(routes=[_EveryPath(handler.handle)])
    app.router.redirect_slashes = False
    return app
