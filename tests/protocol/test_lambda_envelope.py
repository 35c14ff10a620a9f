"""The Lambda JSON envelope."""

from __future__ import annotations

import base64
import json

import pytest

from restate_lambda.protocol import (
    LambdaEnvelopeError,
    build_request,
    build_response,
    encode_envelope,
    parse_request,
    parse_response,
)
from restate_lambda.protocol.lambda_envelope import to_dict


def test_request_round_trip_in_restate_shape() -> None:
    body = b"\x00\x00\x00\x00\x00\x00\x00\x02hi"
    env = build_request(
        "/invoke/Greeter/greet", body, {"Content-Type": "application/vnd.restate.invocation.v6"}
    )
    data = encode_envelope(env)
    raw = json.loads(data)
    assert raw == {
        "path": "/invoke/Greeter/greet",
        "httpMethod": "POST",
        "headers": {"content-type": "application/vnd.restate.invocation.v6"},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    req = parse_request(data)
    assert (req.method, req.path, req.body) == ("POST", "/invoke/Greeter/greet", body)
    assert req.headers["content-type"] == "application/vnd.restate.invocation.v6"
    assert parse_request(raw) == req


def test_discovery_request() -> None:
    req = parse_request(to_dict(build_request("/discover", b"", method="GET")))
    assert (req.method, req.path, req.body) == ("GET", "/discover", b"")


def test_api_gateway_v2_event() -> None:
    event = {
        "version": "2.0",
        "rawPath": "/invoke/Counter/add",
        "requestContext": {"http": {"method": "post", "path": "/invoke/Counter/add"}},
        "headers": {"Content-Type": "application/vnd.restate.invocation.v5"},
        "body": "plain text",
        "isBase64Encoded": False,
    }
    req = parse_request(json.dumps(event))
    assert req.method == "POST" and req.path == "/invoke/Counter/add"
    assert req.body == b"plain text"
    assert req.headers == {"content-type": "application/vnd.restate.invocation.v5"}


def test_response_round_trip() -> None:
    env = build_response(
        200, b"\x01\x02", {"content-type": "application/vnd.restate.invocation.v5"}
    )
    raw = json.loads(encode_envelope(env))
    assert raw["statusCode"] == 200 and raw["isBase64Encoded"] is True
    resp = parse_response(raw)
    assert (resp.status, resp.body) == (200, b"\x01\x02")
    # multi-valued headers and missing body are accepted
    resp = parse_response({"statusCode": 415, "headers": {"X": ["a", "b"]}})
    assert (resp.status, resp.headers, resp.body) == (415, {"x": "a, b"}, b"")


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"httpMethod": "POST"}',
        b'{"path": "/x", "body": "***", "isBase64Encoded": true}',
        b'{"path": 3}',
    ],
)
def test_bad_requests(bad: bytes) -> None:
    with pytest.raises(LambdaEnvelopeError):
        parse_request(bad)


def test_bad_response() -> None:
    with pytest.raises(LambdaEnvelopeError):
        parse_response(b'{"headers": {}}')
