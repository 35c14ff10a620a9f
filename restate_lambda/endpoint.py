"""An endpoint: the bound services, routing, and the request-response exchange shared by the
ASGI app (HTTP/1.1 and in process) and the Lambda handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from restate_lambda.service import AnyService, Service, VirtualObject, Workflow

if TYPE_CHECKING:
    from restate_lambda.handler import Handler
    from restate_lambda.identity import IdentityVerifier

SDK_VERSION = "restate-lambda/0.1.0"
Reply = tuple[int, list[tuple[str, str]], bytes]


class Endpoint:
    """A container of services plus protocol options."""

    def __init__(self) -> None:
        self.services: dict[str, AnyService] = {}
        self.protocol: Literal["bidi", "request_response"] | None = None
        self.identity_keys: list[str] = []
        self.eager_runs = True
        self._verifier: IdentityVerifier | None = None

    def bind(self, *services: AnyService) -> Endpoint:
        """Add services (ValueError on duplicates or unknown types)."""
        for s in services:
            if not isinstance(s, (Service, VirtualObject, Workflow)):
                raise ValueError(f"invalid service type {s!r}")
            if s.name in self.services:
                raise ValueError(f"service {s.name} already exists")
            self.services[s.name] = s
        return self

    def streaming_protocol(self) -> Endpoint:
        """Always announce BIDI_STREAM (needs an HTTP/2 server)."""
        self.protocol = "bidi"
        return self

    def request_response_protocol(self) -> Endpoint:
        """Always announce REQUEST_RESPONSE."""
        self.protocol = "request_response"
        return self

    def identity_key(self, key: str) -> None:
        """Require requests signed by ``key`` (``publickeyv1_…``)."""
        self.identity_keys.append(key)
        self._verifier = None

    def verifier(self) -> IdentityVerifier:
        """The request-identity verifier for the configured keys."""
        if self._verifier is None:
            from restate_lambda.identity import IdentityVerifier

            self._verifier = IdentityVerifier(self.identity_keys)
        return self._verifier

    def app(self) -> Any:
        """The ASGI app of this endpoint (a Lambda handler when running on AWS Lambda)."""
        from restate_lambda.asgi import AsgiApp

        asgi = AsgiApp(self)
        import os

        if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
            return asgi.lambda_handler
        return asgi


def parse_path(path: str) -> tuple[str, str | None, str | None]:
    """("invoke", service, handler) | ("discover"|"health"|"unknown", None, None)."""
    parts = path.rstrip("/").rsplit("/", 3)
    if len(parts) >= 3 and parts[-3] == "invoke":
        return "invoke", parts[-2], parts[-1]
    if parts[-1] in ("health", "discover"):
        return parts[-1], None, None
    return "unknown", None, None


def text_reply(status: int, text: str) -> Reply:
    """A plain-text answer."""
    return (
        status,
        [("content-type", "text/plain"), ("x-restate-server", SDK_VERSION)],
        text.encode(),
    )


def discovery_reply(endpoint: Endpoint, accept: str | None, bidi_capable: bool) -> Reply:
    """Answer ``GET /discover``: the highest manifest version (2-4) both sides know."""
    from restate_lambda.discovery import manifest_json
    from restate_lambda.protocol.version import manifest_content_type, negotiate_manifest_version

    version = negotiate_manifest_version(accept, (2, 3, 4), default=2)
    if version is None:
        return text_reply(415, f"unsupported discovery version(s): {accept}")
    mode = endpoint.protocol or ("bidi" if bidi_capable else "request_response")
    body = manifest_json(endpoint, version, "BIDI_STREAM" if mode == "bidi" else "REQUEST_RESPONSE")
    return (
        200,
        [("content-type", manifest_content_type(version)), ("x-restate-server", SDK_VERSION)],
        body,
    )


def find_handler(endpoint: Endpoint, service: str | None, handler: str | None) -> Handler | None:
    """The handler for ``/invoke/{service}/{handler}``."""
    svc = endpoint.services.get(service or "")
    return svc.handlers.get(handler or "") if svc is not None else None


def check_invocation(
    endpoint: Endpoint, headers: dict[str, str], service: str | None, handler: str | None
) -> tuple[Reply | None, int, Handler | None]:
    """Validate an invoke request: (error reply or None, protocol version, handler)."""
    from restate_lambda.protocol.version import parse_invocation_content_type

    h = find_handler(endpoint, service, handler)
    if h is None:
        return text_reply(404, f"unknown handler {service}/{handler}"), 0, None
    version = parse_invocation_content_type(headers.get("content-type"))
    if version is None:
        return text_reply(415, "expected content-type application/vnd.restate.invocation.vN"), 0, h
    if version not in (5, 6):
        return text_reply(415, f"unsupported protocol version {version}, supported: 5..6"), 0, h
    return None, version, h


def invocation_headers(version: int) -> list[tuple[str, str]]:
    """Response headers of an invocation stream."""
    return [
        ("content-type", f"application/vnd.restate.invocation.v{version}"),
        ("x-restate-server", SDK_VERSION),
    ]


async def request_response(
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    bidi_capable: bool = False,
) -> Reply:
    """Answer one complete request (discovery, health, or a request-response invocation)."""
    kind, service, handler = parse_path(path)
    if kind == "health":
        return 200, [("content-type", "application/json")], b'{"status":"ok"}'
    verifier = endpoint.verifier()
    if verifier.enabled:
        from restate_lambda.clock import SystemClock
        from restate_lambda.identity import IdentityError

        try:
            verifier.verify(headers, path, SystemClock().now_ms() / 1000)
        except IdentityError as e:
            return text_reply(401, str(e))
    if kind == "discover":
        return discovery_reply(endpoint, headers.get("accept"), bidi_capable)
    if kind != "invoke":
        return text_reply(404, f"not found: {path}")
    error, version, h = check_invocation(endpoint, headers, service, handler)
    if error is not None:
        return error
    assert h is not None
    from restate_lambda.invocation import Attempt
    from restate_lambda.machine import Machine

    m = Machine(version, eager_runs=endpoint.eager_runs)
    m.feed(body)
    m.close_input()
    if not m.closed:
        attempt = Attempt(m, h, headers)
        await attempt.run()
    return 200, invocation_headers(version), m.take_output()
