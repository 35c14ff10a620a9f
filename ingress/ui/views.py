"""The web UI's HTTP endpoints: the page shell, its two static assets, and the views.

``GET /ui`` is a static shell (no data); ``ui.js`` routes on the URL's fragment
(``#/invocations?status=failed``, ``#/invocations/inv_…``, ``#/services``,
``#/state?service=Cart&key=c1``) and fetches the matching view from ``/ui/views/…``, sending the
admin token (kept in the tab's ``sessionStorage``) as a bearer token. Views are HTML rendered
here with Jinja2, every value escaped; the shell's Content-Security-Policy allows scripts and
styles from this origin only, so a value that slipped through could still not run. Actions
(cancel, kill, purge, pause, resume) go from ``ui.js`` straight to the admin API's ``PATCH
/invocations/{id}/{action}``, through the same guard as any client (same-origin, token).

A refused view is a JSON ``{code, message}`` like the admin API's errors.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ingress.ui.data import (
    SINCE,
    STATUS_FILTERS,
    InvocationFilter,
    UiData,
    raw_bytes,
)
from ingress.ui.errors import Row, UiError
from ingress.ui.timeline import cut, failure_of, iso_time, preview, timeline
from invoker.api import EngineApi, EngineError

log = logging.getLogger("restate_lambda.admin.ui")

HERE = Path(__file__).resolve().parent
#: The assets the shell loads: name -> media type.
ASSETS = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: Paths a browser loads without the token (a navigation cannot send one): no data in them.
PUBLIC_PATHS = frozenset({"/ui", *(f"/ui/static/{name}" for name in ASSETS)})
#: Statuses each action applies to (the engine checks again).
ACTIONS: dict[str, tuple[str, ...]] = {
    "cancel": ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused"),
    "kill": ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused"),
    "pause": ("ready", "running", "backing-off"),
    "resume": ("paused", "backing-off"),
    "purge": ("completed",),
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def ui_error(status: int, message: str) -> JSONResponse:
    """A refused view: ``{code, message}``."""
    return JSONResponse(
        {"code": status, "message": message}, status_code=status, headers=SECURITY_HEADERS
    )


def hashlink(route: str, **params: Any) -> str:
    """``#/route?a=b`` with the non-empty ``params`` encoded (a link to another view)."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"#/{route}" + (f"?{query}" if query else "")


def _now(engine: EngineApi) -> datetime:
    """The engine's time (a manual clock in tests), else the system's."""
    from restate_lambda.clock import SystemClock

    clock = getattr(engine, "clock", None) or SystemClock()
    return datetime.fromtimestamp(clock.now_ms() / 1000, UTC)


def rows_of(rows: list[Row]) -> list[Row]:
    """Rows whose missing columns read as None in templates (JSON rows leave out nulls)."""
    return [defaultdict(lambda: None, r) for r in rows]


def _value(raw: Any) -> str | None:
    return preview(raw_bytes(raw), 2000)


@cache
def _environment() -> Any:
    """The Jinja2 environment (imported on the first view; autoescaping on)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=iso_time, cut=cut, value=_value)
    env.globals.update(hashlink=hashlink, actions=ACTIONS)
    return env


def render(template: str, **context: Any) -> HTMLResponse:
    """A view rendered from ``template``."""
    html = _environment().get_template(template).render(**context)
    return HTMLResponse(html, headers={**SECURITY_HEADERS, "cache-control": "no-store"})


class UiEndpoints:
    """The UI's endpoints over one engine."""

    def __init__(self, engine: EngineApi, data: UiData | None = None) -> None:
        self.engine = engine
        self._data = data

    @property
    def data(self) -> UiData:
        """The reads (SQL when the extra is installed), made on first use."""
        if self._data is None:
            self._data = UiData(self.engine)
        return self._data

    async def shell(self, request: Request) -> Response:
        """``GET /ui``: the static page that loads the views."""
        return Response(
            (HERE / "static" / "shell.html").read_bytes(),
            media_type="text/html; charset=utf-8",
            headers={**SECURITY_HEADERS, "cache-control": "no-cache"},
        )

    async def asset(self, request: Request) -> Response:
        """``GET /ui/static/{name}``: one of :data:`ASSETS`."""
        name = request.path_params["name"]
        if name not in ASSETS:
            return ui_error(404, f"no asset {name!r}")
        return Response(
            (HERE / "static" / name).read_bytes(),
            media_type=ASSETS[name],
            headers={**SECURITY_HEADERS, "cache-control": "no-cache"},
        )

    async def invocations(self, request: Request) -> Response:
        """The invocations, filtered."""
        f = InvocationFilter.from_params(request.query_params)
        page = await self.data.invocations(f, _now(self.engine))
        services = sorted(s["name"] for s in await self.engine.list_services())
        return render(
            "invocations.html",
            f=f,
            rows=rows_of(page.rows[: f.limit]),
            more=len(page.rows) > f.limit,
            queries=page.queries,
            statuses=STATUS_FILTERS,
            since_choices=list(SINCE),
            services=services,
            created_from=iso_time(f.created_from) if f.created_from else "",
            created_to=iso_time(f.created_to) if f.created_to else "",
        )

    async def invocation(self, request: Request) -> Response:
        """One invocation: facts, last failure with its stack trace, timeline, actions."""
        inv_id = request.path_params["invocation_id"]
        row, journal, events, page = await self.data.invocation(inv_id)
        if row is None:
            raise UiError(404, f"no invocation {inv_id} (it may have been purged)")
        failure, related = failure_of(row, events)
        entries = timeline(journal, failure, related)
        return render(
            "invocation.html",
            inv=rows_of([row])[0],
            failure=failure,
            entries=entries,
            queries=page.queries,
            allowed=[a for a, statuses in ACTIONS.items() if row.get("status") in statuses],
            now=iso_time(_now(self.engine)),
        )

    async def services(self, request: Request) -> Response:
        """Services (with handlers) and deployments."""
        services = await self.engine.list_services()
        deployments = await self.engine.list_deployments()
        services.sort(key=lambda s: s["name"])
        for service in services:
            service["handlers"] = rows_of(service.get("handlers", []))
        deployments.sort(key=lambda d: d["id"])
        return render("services.html", services=rows_of(services), deployments=rows_of(deployments))

    async def state(self, request: Request) -> Response:
        """The keys of a service with state, or the state of one key."""
        params = request.query_params
        service = (params.get("service") or "").strip()
        key = params.get("key")
        keyed = [
            s["name"]
            for s in await self.engine.list_services()
            if s.get("ty") in ("VirtualObject", "Workflow")
        ]
        context: dict[str, Any] = {
            "services": sorted(keyed),
            "service": service,
            "key": key,
            "keys": [],
            "rows": [],
            "about": None,
            "queries": [],
        }
        if service and key is not None:
            rows, about, page = await self.data.state(service, key)
            context.update(rows=rows_of(rows), about=about, queries=page.queries)
        elif service:
            page = await self.data.keys(service)
            context.update(keys=rows_of(page.rows), queries=page.queries)
        return render("state.html", **context)

    def routes(self) -> list[BaseRoute]:
        """``/ui``, ``/ui/static/{name}`` and ``/ui/views/…``."""
        views = [
            ("/ui/views/invocations", self.invocations),
            ("/ui/views/invocations/{invocation_id}", self.invocation),
            ("/ui/views/services", self.services),
            ("/ui/views/state", self.state),
        ]
        return [
            Route("/ui", self.shell, methods=["GET"]),
            Route("/ui/static/{name}", self.asset, methods=["GET"]),
            *(Route(path, _guarded(endpoint), methods=["GET"]) for path, endpoint in views),
        ]


def _guarded(endpoint: Any) -> Any:
    async def wrapper(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except UiError as exc:
            return ui_error(exc.status, exc.message)
        except EngineError as exc:
            return ui_error(exc.status, exc.message)
        except ImportError as exc:
            log.warning("web UI unavailable: %s", exc)
            return ui_error(501, f"the web UI needs jinja2 (pip install jinja2): {exc}")
        except Exception:
            log.exception("web UI view %s failed", request.url.path)
            return ui_error(500, "internal server error")

    return wrapper


def ui_routes(engine: EngineApi) -> list[BaseRoute]:
    """The web UI's routes (see the module docstring)."""
    return UiEndpoints(engine).routes()
