"""Who may use the admin API: a bearer token, Host and Origin checks, JSON-only bodies.

restate-server's admin API has no authentication and parses any body as JSON, so a web page
can send a simple cross-site ``POST http://127.0.0.1:9070/deployments`` (``text/plain``) and
re-point a service at its own deployment, and a DNS-rebinding page can even read the answers.
:class:`AdminGuard` wraps the admin app and refuses, before any route runs:

* a request without ``Authorization: Bearer <token>`` when a token is configured: 401
  (``GET /health`` stays open for probes; the official ``restate`` CLI sends the token it reads
  from ``RESTATE_AUTH_TOKEN``);
* a ``Host`` that is not loopback or configured (DNS rebinding): 403;
* an ``Origin`` that is not the admin's own loopback origin (CSRF), or a browser's
  ``Sec-Fetch-Site: cross-site``/``same-site``: 403;
* a body on a mutating method (POST, PUT, PATCH, DELETE) that is not ``application/json``: 415.

Errors use the admin API's body, ``{"message", "restate_code": null}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

log = logging.getLogger("restate_lambda.admin")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OPEN_PATHS = frozenset({"/health", "/v2/health", "/v3/health", "/v4/health"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, brackets allowed) is a loopback address."""
    name = host.strip().lower().strip("[]")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(netloc: str) -> str | None:
    """The host part of a ``Host`` header or an origin's netloc; ``None`` if malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return None
    return parts.hostname


@dataclass(frozen=True, slots=True)
class AdminSecurity:
    """What :class:`AdminGuard` enforces.

    Attributes:
        token: the bearer token every request but ``GET /health`` must carry; ``None``: none.
        allowed_hosts: ``Host`` names accepted besides loopback ones (lower case, no port);
            ``None`` turns the Host check off (in-process apps, or behind an IAM-authorized
            Function URL, where the caller signs every request).
        json_only: refuse bodies other than ``application/json`` on mutating methods.
    """

    token: str | None = None
    allowed_hosts: frozenset[str] | None = None
    json_only: bool = True

    @classmethod
    def for_bind(
        cls, bind_host: str, token: str | None, extra_hosts: Iterable[str] = ()
    ) -> AdminSecurity:
        """The policy of an admin API bound to ``bind_host`` (what ``restate-lambda dev`` uses).

        Loopback Hosts are always accepted, plus ``extra_hosts`` and a non-wildcard bind
        address. Bound to a wildcard address (``0.0.0.0``, ``::``) with no ``extra_hosts``, the
        Host is not checked: the (then mandatory) token is what keeps strangers out.

        Raises:
            ValueError: ``bind_host`` is not loopback and ``token`` is empty.
        """
        token = token or None
        if not is_loopback(bind_host) and token is None:
            raise ValueError(
                f"the admin API would listen on {bind_host}, which is not a loopback address: "
                "give --admin-token (or RESTATE_LAMBDA_ADMIN_TOKEN)"
            )
        hosts = {h.strip().lower() for h in extra_hosts if h.strip()}
        wildcard = bind_host.strip("[]") in ("0.0.0.0", "::", "")
        if wildcard and not hosts:
            return cls(token=token, allowed_hosts=None)
        if not wildcard:
            hosts.add(bind_host.strip("[]").lower())
        return cls(token=token, allowed_hosts=frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        """Whether a request's ``Host`` name is accepted."""
        if self.allowed_hosts is None or is_loopback(host):
            return True
        return host.lower() in self.allowed_hosts


class AdminGuard:
    """ASGI middleware enforcing an :class:`AdminSecurity` in front of the admin app."""

    def __init__(
        self, app: ASGIApp, security: AdminSecurity, public_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.security = security
        #: paths answered to GET/HEAD without the token (e.g. the web UI's static shell: a
        #: browser navigation cannot send one); the Host and Origin checks still apply
        self.public_paths = frozenset(public_paths) | _OPEN_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request (401/403/415) or pass it on unchanged."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        method, path = scope.get("method", ""), scope.get("path", "")
        log.info("admin refused %s %s: %d %s", method, path, status, message)
        headers = (
            {"www-authenticate": 'Bearer realm="restate-lambda admin"'} if status == 401 else {}
        )
        response = JSONResponse(
            {"message": message, "restate_code": None}, status_code=status, headers=headers
        )
        await response(scope, receive, send)

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """``(status, message)`` to refuse the request with, or ``None`` to let it through."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            # A repeated security header is ambiguous: keep the first, refuse below if unequal.
            value = raw_value.decode("latin-1")
            if name in headers and headers[name] != value and name in _SINGLE_HEADERS:
                return 400, f"repeated header '{name}'"
            headers.setdefault(name, value)
        method = str(scope.get("method", "GET")).upper()
        return (
            self._check_host(headers)
            or self._check_origin(headers, method)
            or self._check_token(headers, method, str(scope.get("path", "")))
            or self._check_content_type(headers, method)
        )

    def _check_host(self, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.security.allowed_hosts is None:
            return None
        host = headers.get("host")
        name = _host_name(host) if host else None
        if name is None:
            return 403, "missing or malformed Host header"
        if not self.security.host_allowed(name):
            return 403, f"Host '{host}' is not allowed (DNS rebinding protection)"
        return None

    def _check_origin(self, headers: dict[str, str], method: str) -> tuple[int, str] | None:
        fetch_site = headers.get("sec-fetch-site", "").lower()
        if method in MUTATING_METHODS and fetch_site in ("cross-site", "same-site"):
            return 403, f"cross-origin request refused (Sec-Fetch-Site: {fetch_site})"
        origin = headers.get("origin")
        if origin is None:
            return None
        try:
            parts = urlsplit(origin)
            _ = parts.port
        except ValueError:
            return 403, f"Origin '{origin}' is not allowed"
        same_host = parts.netloc.lower() == headers.get("host", "").lower()
        name = parts.hostname or ""
        if (
            parts.scheme not in ("http", "https")
            or not same_host
            or not (is_loopback(name) or self.security.host_allowed(name))
        ):
            return 403, f"Origin '{origin}' is not allowed (cross-site request)"
        return None

    def _check_token(
        self, headers: dict[str, str], method: str, path: str
    ) -> tuple[int, str] | None:
        expected = self.security.token
        if expected is None or (method in ("GET", "HEAD") and path in self.public_paths):
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return 401, "missing bearer token: send 'Authorization: Bearer <admin token>'"
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return 401, "invalid bearer token"
        return None

    def _check_content_type(self, headers: dict[str, str], method: str) -> tuple[int, str] | None:
        if not self.security.json_only or method not in MUTATING_METHODS:
            return None
        content_type = headers.get("content-type")
        length = headers.get("content-length", "")
        has_body = "transfer-encoding" in headers or (length not in ("", "0"))
        if content_type is None:
            if has_body:
                return 415, "a request body needs 'content-type: application/json'"
            return None
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, f"unsupported content-type '{content_type}': expected application/json"
        return None


#: Headers whose repetition with different values is refused (they decide access).
_SINGLE_HEADERS = frozenset(
    {"host", "origin", "authorization", "content-type", "content-length", "sec-fetch-site"}
)
