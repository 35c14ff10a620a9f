"""Content types and version negotiation."""

from __future__ import annotations

from restate_lambda.protocol import (
    invocation_content_type,
    manifest_accept_header,
    manifest_content_type,
    negotiate_invocation_content_type,
    negotiate_manifest_version,
    negotiate_protocol_version,
    parse_invocation_content_type,
    parse_manifest_content_type,
)


def test_invocation_content_types() -> None:
    assert invocation_content_type(5) == "application/vnd.restate.invocation.v5"
    assert parse_invocation_content_type("application/vnd.restate.invocation.v6") == 6
    assert parse_invocation_content_type(" Application/VND.restate.invocation.v5 ; x=y") == 5
    assert parse_invocation_content_type("application/json") is None
    assert parse_invocation_content_type("application/vnd.restate.invocation.vX") is None
    assert parse_invocation_content_type(None) is None


def test_negotiate_protocol_version() -> None:
    assert negotiate_protocol_version(5, 7) == 6
    assert negotiate_protocol_version(5, 5) == 5
    assert negotiate_protocol_version(1, 4) is None
    assert negotiate_protocol_version(7, 7) is None
    assert negotiate_invocation_content_type(invocation_content_type(5)) == 5
    assert negotiate_invocation_content_type("application/vnd.restate.invocation.v7") is None


def test_manifest_content_types() -> None:
    assert manifest_content_type(4) == "application/vnd.restate.endpointmanifest.v4+json"
    assert parse_manifest_content_type(manifest_content_type(3)) == 3
    assert parse_manifest_content_type("application/json") is None


def test_negotiate_manifest_from_accept() -> None:
    assert negotiate_manifest_version(manifest_accept_header()) == 4
    assert negotiate_manifest_version(manifest_accept_header((2, 1))) == 2
    assert negotiate_manifest_version(manifest_accept_header(), supported=(2, 3)) == 3
    assert (
        negotiate_manifest_version(
            "application/vnd.restate.endpointmanifest.v4+json;q=0, "
            "application/vnd.restate.endpointmanifest.v3+json"
        )
        == 3
    )
    assert negotiate_manifest_version("application/json") is None
    assert negotiate_manifest_version(None) is None
    assert negotiate_manifest_version("", default=2) == 2
