"""Transports that carry one request-response exchange to a handler deployment.

A deployment is reached over HTTP/1.1 (any URL), in process through an ASGI app registered
under an ``asgi://NAME`` URI, or (see :mod:`invoker.lambda_transport`) through AWS Lambda's
Invoke API. All look the same to the engine: a method, a path, headers and a body in, a status,
headers and a body out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from invoker.exchange import (
    Exchange,
    Reply,
    ResponseTooLargeError,
    Transport,
    TransportError,
)
from invoker.http2_client import Http2Client, Http2Error
from invoker.http_client import HttpClient, HttpClientError

if TYPE_CHECKING:
    from invoker.request_identity import RequestSigner

__all__ = ["Exchange", "Reply", "SigningTransport", "Transport", "TransportError", "Transports"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class HttpTransport:
    """HTTP/1.1 request-response to a deployment URL, with pooled keep-alive connections."""

    def __init__(self) -> None:
        self._client = HttpClient()

    async def exchange(self, address: str, request: Exchange) -> Reply:
        """POST/GET ``address + path``."""
        url = address.rstrip("/") + request.path
        try:
            response = await self._client.request(
                request.method,
                url,
                request.headers,
                request.body,
                timeout=request.timeout_s,
                max_body=request.max_response_bytes,
            )
        except HttpClientError as exc:
            raise TransportError(str(exc)) from exc
        return Reply(status=response.status, headers=response.headers, body=response.body)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()


class Http2Transport:
    """Request-response over HTTP/2 cleartext (h2c, prior knowledge): for deployments
    registered without ``use_http_11`` that answer in request-response mode. Bidirectional
    attempts use :attr:`client` directly (:mod:`invoker.bidi`)."""

    def __init__(self) -> None:
        self.client = Http2Client()

    async def exchange(self, address: str, request: Exchange) -> Reply:
        """One request and its whole response on one stream."""
        url = address.rstrip("/") + request.path
        try:
            async with asyncio.timeout(request.timeout_s):
                status, headers, body = await self.client.request(
                    request.method,
                    url,
                    request.headers,
                    request.body,
                    max_body=request.max_response_bytes,
                )
        except TimeoutError as exc:
            raise TransportError(f"{url}: no response within {request.timeout_s:g} s") from exc
        except Http2Error as exc:
            raise TransportError(f"{url}: {exc}") from exc
        return Reply(status=status, headers=headers, body=body)

    async def close(self) -> None:
        """Close the connections."""
        await self.client.close()


class AsgiTransport:
    """Calls ASGI apps registered by name in this process (``asgi://NAME``), no HTTP involved."""

    def __init__(self) -> None:
        self._apps: dict[str, AsgiApp] = {}

    def mount(self, name: str, app: AsgiApp) -> str:
        """Register ``app`` and return its deployment URI."""
        self._apps[name] = app
        return f"asgi://{name}"

    async def exchange(self, address: str, request: Exchange) -> Reply:
        """Run the ASGI app once with the request and collect its response."""
        name = address.removeprefix("asgi://").strip("/")
        app = self._apps.get(name)
        if app is None:
            raise TransportError(f"no in-process app named {name!r}")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "extensions": {},
        }
        if request.checkpoint is not None:
            checkpointer, token = request.checkpoint
            scope["extensions"]["restate.checkpoint"] = {
                "checkpointer": checkpointer,
                "token": token,
            }
        sent = False
        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        done = asyncio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    headers[k.decode().lower()] = v.decode()
            elif message["type"] == "http.response.body":
                nonlocal size
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > request.max_response_bytes:
                    raise ResponseTooLargeError(size, request.max_response_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    done.set()

        try:
            await asyncio.wait_for(app(scope, receive, send), request.timeout_s)
        except TimeoutError as exc:
            raise TransportError("in-process handler timed out") from exc
        except ResponseTooLargeError as exc:
            raise TransportError(str(exc)) from exc
        except Exception as exc:  # the app is user code: any failure is a failed attempt
            raise TransportError(f"in-process handler raised {type(exc).__name__}: {exc}") from exc
        finally:
            done.set()
        return Reply(status=status, headers=headers, body=b"".join(chunks))

    async def close(self) -> None:
        """Nothing to release."""


class SigningTransport:
    """Adds the request-identity headers (:mod:`invoker.request_identity`) to every exchange
    before handing it to the wrapped transport."""

    __slots__ = ("inner", "signer")

    def __init__(self, inner: Transport, signer: RequestSigner) -> None:
        self.inner = inner
        self.signer = signer

    async def exchange(self, address: str, request: Exchange) -> Reply:
        """Sign ``request`` for its path and send it."""
        return await self.inner.exchange(address, self.signer.sign(request))

    async def close(self) -> None:
        """Close the wrapped transport."""
        await self.inner.close()


class Transports:
    """Picks the transport for a deployment address by its scheme.

    With a ``signer`` every exchange (discovery and invocations, whatever the transport) is
    signed as restate-server signs its requests; ``signer`` may also be set after construction.
    """

    def __init__(
        self,
        http: Transport | None = None,
        asgi: AsgiTransport | None = None,
        lambda_: Transport | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        self.http: Transport = http or HttpTransport()
        self.http2 = Http2Transport()
        self.asgi = asgi or AsgiTransport()
        #: Created on first use of an ``arn:`` address (boto3 is imported only then).
        self.lambda_: Transport | None = lambda_
        #: Signs every request to a deployment (None: requests carry no identity).
        self.signer: RequestSigner | None = signer

    def for_address(self, address: str, *, http2: bool = False) -> Transport:
        """The transport that reaches ``address`` (signing its requests if there is a signer);
        ``http2``: an HTTP URL spoken to over HTTP/2 cleartext instead of HTTP/1.1."""
        transport = self._unsigned(address, http2)
        if self.signer is None:
            return transport
        return SigningTransport(transport, self.signer)

    def _unsigned(self, address: str, http2: bool) -> Transport:
        if address.startswith("asgi://"):
            return self.asgi
        if address.startswith("arn:"):
            if self.lambda_ is None:
                from invoker.lambda_transport import LambdaTransport

                self.lambda_ = LambdaTransport()
            return self.lambda_
        return self.http2 if http2 else self.http

    def sign(self, exchange: Exchange) -> Exchange:
        """``exchange`` with the identity headers (for streams opened outside a transport)."""
        if self.signer is None:
            return exchange
        return self.signer.sign(exchange)

    async def close(self) -> None:
        """Close every transport."""
        await self.http.close()
        await self.http2.close()
        await self.asgi.close()
        if self.lambda_ is not None:
            await self.lambda_.close()
