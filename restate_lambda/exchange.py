"""One exchange with the runtime: routing, discovery, request identity, the checkpoint channel
offered by a request, and a request-response invocation (the whole request body in, the whole
response out) shared by the ASGI app (HTTP/1.1, in process) and the Lambda handler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restate_lambda.checkpoint import CheckpointChannel
    from restate_lambda.endpoint_config import EndpointConfig
    from restate_lambda.handler import Handler

SDK_VERSION = "restate-lambda/0.1.0"
Reply = tuple[int, list[tuple[str, str]], bytes]
#: restate_lambda.checkpoint's HEADER_TOKEN and ASGI_EXTENSION, checked without importing it.
_OFFER_TOKEN = "x-restate-checkpoint-token"
_OFFER_EXTENSION = "restate.checkpoint"


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


def discovery_reply(config: EndpointConfig, accept: str | None, bidi_capable: bool) -> Reply:
    """Answer ``GET /discover``: the highest manifest version (2-4) both sides know."""
    from restate_lambda.discovery import manifest_json
    from restate_lambda.protocol.version import manifest_content_type, negotiate_manifest_version

    version = negotiate_manifest_version(accept, (2, 3, 4), default=2)
    if version is None:
        return text_reply(415, f"unsupported discovery version(s): {accept}")
    mode = config.protocol or ("bidi" if bidi_capable else "request_response")
    body = manifest_json(config, version, "BIDI_STREAM" if mode == "bidi" else "REQUEST_RESPONSE")
    return (
        200,
        [("content-type", manifest_content_type(version)), ("x-restate-server", SDK_VERSION)],
        body,
    )


def verify_identity(config: EndpointConfig, headers: dict[str, str], path: str) -> Reply | None:
    """A 401 reply when request identity is required and the request is not signed by a key."""
    verifier = config.verifier()
    if not verifier.enabled:
        return None
    from restate_lambda.clock import SystemClock
    from restate_lambda.identity import IdentityError

    try:
        # Wall time, never the handlers' clock: the runtime signs with wall time, and a test
        # harness that moves the handlers' clock ahead must not make every token look expired.
        verifier.verify(headers, path, SystemClock().now_ms() / 1000)
    except IdentityError as e:
        return text_reply(401, str(e))
    return None


def find_handler(
    config: EndpointConfig, service: str | None, handler: str | None
) -> Handler | None:
    """The handler for ``/invoke/{service}/{handler}``."""
    svc = config.services.get(service or "")
    return svc.handlers.get(handler or "") if svc is not None else None


def check_invocation(
    config: EndpointConfig, headers: dict[str, str], service: str | None, handler: str | None
) -> tuple[Reply | None, int, Handler | None]:
    """Validate an invoke request: (error reply or None, protocol version, handler)."""
    from restate_lambda.protocol.version import parse_invocation_content_type

    h = find_handler(config, service, handler)
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


def checkpoint_channel(
    config: EndpointConfig,
    headers: Mapping[str, str],
    extensions: Mapping[str, Any] | None = None,
) -> CheckpointChannel | None:
    """The checkpoint channel a request offers (see :mod:`restate_lambda.checkpoint`):
    the ASGI extension ``restate.checkpoint``, or the ``x-restate-checkpoint-token`` header with
    the endpoint's checkpointer, or one for ``x-restate-checkpoint-url``: a Lambda invoker
    for a Lambda function ARN, an HTTP client otherwise."""
    if _OFFER_TOKEN not in headers and not (extensions and _OFFER_EXTENSION in extensions):
        return None  # nothing offered: restate_lambda.checkpoint need not be loaded
    from restate_lambda.checkpoint import (
        ASGI_EXTENSION,
        HEADER_TOKEN,
        HEADER_URL,
        CheckpointChannel,
    )

    offered = (extensions or {}).get(ASGI_EXTENSION)
    if offered:
        return CheckpointChannel(offered["checkpointer"], str(offered["token"]))
    token = headers.get(HEADER_TOKEN)
    if not token:
        return None
    if config.checkpointer is not None:
        return CheckpointChannel(config.checkpointer, token)
    url = headers.get(HEADER_URL)
    if not url:
        return None
    if url.startswith("arn:"):  # a Lambda function ARN: runtimes on AWS Lambda
        from restate_lambda.checkpoint_lambda import LambdaCheckpointer, usable

        if not usable(url):
            return None  # not a channel this SDK can use: suspend after each run instead
        return CheckpointChannel(LambdaCheckpointer(url), token)
    from restate_lambda.checkpoint_http import HttpCheckpointer

    return CheckpointChannel(HttpCheckpointer(url), token)


async def request_response(
    config: EndpointConfig,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    bidi_capable: bool = False,
    *,
    remaining_ms: Callable[[], int] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Reply:
    """Answer one complete request (discovery, health, or a request-response invocation).

    ``remaining_ms``: time left before the platform's deadline (AWS Lambda), for voluntary
    suspension; ``extensions``: the ASGI scope's extensions (an in-process checkpoint channel).
    """
    kind, service, handler = parse_path(path)
    if kind == "health":
        return 200, [("content-type", "application/json")], b'{"status":"ok"}'
    denied = verify_identity(config, headers, path)
    if denied is not None:
        return denied
    if kind == "discover":
        return discovery_reply(config, headers.get("accept"), bidi_capable)
    if kind != "invoke":
        return text_reply(404, f"not found: {path}")
    error, version, h = check_invocation(config, headers, service, handler)
    if error is not None:
        return error
    assert h is not None
    from restate_lambda.invocation import Attempt
    from restate_lambda.vm.machine import Machine

    channel = checkpoint_channel(config, headers, extensions)
    m = Machine(version, eager_runs=config.eager_runs, checkpoints=channel is not None)
    m.feed(body)
    m.close_input()
    if not m.closed:
        deadline = None
        if remaining_ms is not None and config.deadline is not None:
            from restate_lambda.deadline import Deadline, DeadlinePolicy

            policy = DeadlinePolicy() if config.deadline == "default" else config.deadline
            deadline = Deadline(remaining_ms, policy)
        await Attempt(m, h, headers, channel=channel, deadline=deadline).run()
    reply_headers = invocation_headers(version)
    if channel is not None:
        from restate_lambda.checkpoint import HEADER_JOURNAL_INDEX

        reply_headers.append((HEADER_JOURNAL_INDEX, str(m.journal_index)))
    return 200, reply_headers, m.take_output()
