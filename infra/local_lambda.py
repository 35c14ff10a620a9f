"""A local AWS Lambda ``Invoke`` endpoint that runs Python handler functions in process.

Point a real boto3 Lambda client at it (``endpoint_url=local.endpoint_url``) and the whole wire
format is exercised: ``POST /2015-03-31/functions/{FunctionName}/invocations`` with an optional
``Qualifier``, ``X-Amz-Invocation-Type`` (``RequestResponse``, ``Event``, ``DryRun``), and
Lambda's answers: ``X-Amz-Executed-Version``, ``X-Amz-Function-Error: Unhandled`` with an
``{"errorMessage", "errorType", "stackTrace"}`` payload when the handler raises,
``ResourceNotFoundException`` (404) for an unknown function or version, and
``RequestTooLargeException`` (413) for a request payload over 6 MB. A response over 6 MB becomes
``Function.ResponseSizeTooLarge``, as on Lambda. Function timeouts are not enforced.

A handler is any ``(event, context) -> JSON-serialisable`` callable; it is built per thread by a
factory (Lambda runs one invocation at a time per sandbox, and SDK adapters keep one event loop
per instance), so concurrent invocations run like concurrent sandboxes::

    with LocalLambda() as local:
        arn = local.add_function("greeter", lambda: restate_lambda_app.lambda_handler)
        boto3.client("lambda", endpoint_url=local.endpoint_url).invoke(FunctionName=arn, ...)

:func:`restate_sdk_handler` turns an official restate-sdk service list into such a factory, and
``restate_lambda.app([...]).lambda_handler`` is this project's SDK's handler.
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

#: Lambda's synchronous request/response payload limit.
PAYLOAD_LIMIT: Final = 6 * 1024 * 1024

LambdaHandler = Callable[[Any, Any], Any]
HandlerFactory = Callable[[], LambdaHandler]


@dataclass(slots=True)
class LambdaContext:
    """The parts of Lambda's context object handlers use."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left (constant here: timeouts are not enforced)."""
        return self.remaining_ms


@dataclass(slots=True)
class _Function:
    name: str
    factory: HandlerFactory
    versions: frozenset[str]
    instances: threading.local = field(default_factory=threading.local)
    invocations: int = 0


class LocalLambda:
    """The endpoint: a threaded HTTP server on ``host`` (port 0 picks a free one).

    Args:
        region: region of the ARNs :meth:`add_function` returns.
        account: account id of those ARNs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        self.region = region
        self.account = account
        self._functions: dict[str, _Function] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` for boto3's ``endpoint_url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def arn(self, name: str, qualifier: str | None = None) -> str:
        """The ARN of function ``name`` (qualified when ``qualifier`` is given)."""
        base = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def add_function(
        self, name: str, factory: HandlerFactory, *, versions: tuple[str, ...] = ("1",)
    ) -> str:
        """Host ``factory``'s handler as function ``name``; return the ARN of its first version.

        ``$LATEST`` is always a valid qualifier too.
        """
        with self._lock:
            self._functions[name] = _Function(name, factory, frozenset({"$LATEST", *versions}))
        return self.arn(name, versions[0] if versions else "$LATEST")

    def remove_function(self, name: str) -> None:
        """Stop hosting function ``name`` (unknown from then on)."""
        with self._lock:
            self._functions.pop(name, None)

    def invocations(self, name: str) -> int:
        """How many times function ``name`` ran."""
        return self._functions[name].invocations

    def start(self) -> LocalLambda:
        """Serve in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="local-lambda", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalLambda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ invoking
    def resolve(self, function_name: str, qualifier: str | None) -> tuple[_Function, str] | None:
        """The function and version a ``FunctionName`` (name, partial or full ARN) names."""
        parts = function_name.split(":")
        if parts[0] == "arn" and len(parts) >= 7:
            name, inline = parts[6], (parts[7] if len(parts) > 7 else None)
        elif len(parts) >= 3 and parts[1] == "function":  # ACCOUNT:function:NAME[:QUALIFIER]
            name, inline = parts[2], (parts[3] if len(parts) > 3 else None)
        else:  # NAME[:QUALIFIER]
            name, inline = parts[0], (parts[1] if len(parts) > 1 else None)
        if inline and qualifier and inline != qualifier:
            return None
        version = qualifier or inline or "$LATEST"
        fn = self._functions.get(name)
        if fn is None or version not in fn.versions:
            return None
        return fn, version

    def run(self, fn: _Function, version: str, payload: bytes) -> tuple[bytes, str | None]:
        """Run one invocation on this thread's instance; return (payload, function error)."""
        with self._lock:
            fn.invocations += 1
        try:
            event = json.loads(payload) if payload else {}
            handler = getattr(fn.instances, "handler", None)
            if handler is None:
                handler = fn.instances.handler = fn.factory()
            context = LambdaContext(fn.name, version, self.arn(fn.name, version))
            result = handler(event, context)
            body = json.dumps(result, separators=(",", ":")).encode()
        except Exception as exc:  # the handler is user code: report it like Lambda
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return json.dumps(error).encode(), "Unhandled"
        if len(body) > PAYLOAD_LIMIT:
            error = {
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({PAYLOAD_LIMIT} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
            return json.dumps(error).encode(), "Unhandled"
        return body, None


def _handler_class(local: LocalLambda) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"Type": "User", "message": message}).encode()
            self._reply(status, body, {"x-amzn-ErrorType": code})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            if len(parts) != 4 or parts[0] != "2015-03-31" or parts[1] != "functions":
                self._error(404, "UnknownOperationException", f"unknown path {url.path}")
                return
            if parts[3] != "invocations":
                self._error(404, "UnknownOperationException", f"unknown path {url.path}")
                return
            name = unquote(parts[2])
            qualifiers = parse_qs(url.query).get("Qualifier")
            qualifier = qualifiers[0] if qualifiers else None
            found = local.resolve(name, qualifier)
            if found is None:
                self._error(
                    404,
                    "ResourceNotFoundException",
                    f"Function not found: {local.arn(name.split(':')[-1], qualifier)}",
                )
                return
            if length > PAYLOAD_LIMIT:
                self._error(
                    413,
                    "RequestTooLargeException",
                    f"Request must be smaller than {PAYLOAD_LIMIT} bytes for the InvokeFunction "
                    "operation",
                )
                return
            fn, version = found
            kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if kind == "DryRun":
                self._reply(204, b"")
                return
            if kind == "Event":
                threading.Thread(target=local.run, args=(fn, version, payload), daemon=True).start()
                self._reply(202, b"")
                return
            body, error = local.run(fn, version, payload)
            headers = {"X-Amz-Executed-Version": version}
            if error is not None:
                headers["X-Amz-Function-Error"] = error
            self._reply(200, body, headers)

    return Handler


def restate_sdk_handler(services: list[Any]) -> HandlerFactory:
    """A factory of Lambda handlers for official restate-sdk services (``restate.app`` in its
    Lambda mode), without setting ``AWS_LAMBDA_FUNCTION_NAME``."""

    def factory() -> LambdaHandler:
        import restate
        from restate.aws_lambda import wrap_asgi_as_lambda_handler

        handler: LambdaHandler = wrap_asgi_as_lambda_handler(restate.app(services))
        return handler

    return factory


def restate_lambda_handler(services: list[Any]) -> HandlerFactory:
    """A factory of Lambda handlers for this project's SDK (``restate_lambda``) services."""

    def factory() -> LambdaHandler:
        from restate_lambda.asgi import AsgiApp
        from restate_lambda.endpoint import Endpoint

        endpoint = Endpoint().bind(*services)
        handler: LambdaHandler = AsgiApp(endpoint).lambda_handler
        return handler

    return factory
