"""An endpoint: the services to serve and how, built fluently, and its ASGI/Lambda app."""

from __future__ import annotations

from typing import Any

from restate_lambda.endpoint_config import EndpointConfig
from restate_lambda.service import AnyService, Service, VirtualObject, Workflow


class Endpoint(EndpointConfig):
    """A container of services plus protocol options (see :class:`EndpointConfig`)."""

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

    def app(self) -> Any:
        """The ASGI app of this endpoint (a Lambda handler when running on AWS Lambda)."""
        import os

        from restate_lambda.asgi import AsgiApp

        asgi = AsgiApp(self)
        if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
            return asgi.lambda_handler
        return asgi
