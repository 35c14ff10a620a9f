"""API Gateway / Function URL events, shaped like ``sam local generate-event`` output."""

from __future__ import annotations

import base64
from typing import Any

ACCOUNT = "123456789012"


def http_api_v2(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event for ``$default`` / ``/{proxy+}``."""
    raw_path, _, query = path.partition("?")
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.168.0.1",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795600000000,
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


def function_url(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Lambda Function URL event (payload 2.0 with a lambda-url domain, IAM authorizer)."""
    event = http_api_v2(method, path, body, headers)
    domain = "xyz.lambda-url.us-east-1.on.aws"
    event["headers"]["host"] = domain
    event["requestContext"]["domainName"] = domain
    event["requestContext"]["authorizer"] = {"iam": {"accountId": ACCOUNT}}
    return event


def rest_v1(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event for ``/{proxy+}``."""
    all_headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": "/prod" + path,
            "stage": "prod",
            "requestId": "req-1",
            "identity": {"sourceIp": "192.168.0.1"},
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


class Context:
    """A Lambda context object."""

    aws_request_id = "req-1"
    function_name = "ingress"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:ingress"
    memory_limit_in_mb = 512

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
