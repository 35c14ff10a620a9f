"""Manifest Structs against manifests produced by the official Python SDK."""

from __future__ import annotations

import json

import msgspec
import pytest

from restate_lambda.protocol import (
    EndpointManifest,
    Handler,
    ManifestError,
    Service,
    decode_manifest,
    encode_manifest,
    manifest_content_type,
    parse_manifest_content_type,
)
from tests.protocol.sdk_app import asgi_call


@pytest.mark.parametrize("version", [4, 3, 2])
async def test_decode_sdk_manifest(version: int) -> None:
    status, headers, body = await asgi_call(
        "GET", "/discover", {"accept": manifest_content_type(version)}
    )
    assert status == 200
    assert parse_manifest_content_type(headers["content-type"]) == version
    m = decode_manifest(body)
    assert m.protocol_mode == "REQUEST_RESPONSE"
    assert m.min_protocol_version == 5 and m.max_protocol_version >= 6
    by_name = {s.name: s for s in m.services}
    assert by_name["Greeter"].ty == "SERVICE"
    assert by_name["Counter"].ty == "VIRTUAL_OBJECT"
    assert by_name["Signup"].ty == "WORKFLOW"
    greet = next(h for h in by_name["Greeter"].handlers if h.name == "greet")
    assert greet.input is not None and greet.input.content_type == "application/json"
    assert greet.input.json_schema == {"type": "string"}
    assert greet.output is not None and greet.output.content_type == "application/json"
    counter = {h.name: h.ty for h in by_name["Counter"].handlers}
    assert counter == {"add": "EXCLUSIVE", "get": "SHARED"}
    signup = {h.name: h.ty for h in by_name["Signup"].handlers}
    assert signup == {"run": "WORKFLOW", "status": "SHARED"}
    assert m.service("Counter") is by_name["Counter"]
    # our re-encoding decodes to the same structure
    assert decode_manifest(encode_manifest(m)) == m


async def test_sdk_refuses_unknown_manifest_version() -> None:
    status, _, _ = await asgi_call("GET", "/discover", {"accept": "application/json"})
    assert status == 415


def _full_manifest() -> EndpointManifest:
    options = {
        "documentation": "docs",
        "metadata": {"team": "x"},
        "inactivity_timeout": 60_000,
        "abort_timeout": 600_000,
        "journal_retention": 86_400_000,
        "idempotency_retention": 3_600_000,
        "enable_lazy_state": True,
        "ingress_private": False,
        "retry_policy_initial_interval": 100,
        "retry_policy_max_interval": 10_000,
        "retry_policy_max_attempts": 10,
        "retry_policy_exponentiation_factor": 2.0,
        "retry_policy_on_max_attempts": "PAUSE",
    }
    return EndpointManifest(
        min_protocol_version=5,
        max_protocol_version=6,
        protocol_mode="REQUEST_RESPONSE",
        lambda_compression="zstd",
        services=[
            Service(
                name="Wf",
                ty="WORKFLOW",
                handlers=[
                    Handler(name="run", ty="WORKFLOW", workflow_completion_retention=1, **options),  # type: ignore[arg-type]
                    Handler(name="peek", ty="SHARED"),
                ],
                **options,  # type: ignore[arg-type]
            )
        ],
    )


def test_camel_case_names_and_versions() -> None:
    m = _full_manifest()
    v4 = json.loads(encode_manifest(m, 4))
    assert v4["minProtocolVersion"] == 5 and v4["lambdaCompression"] == "zstd"
    svc = v4["services"][0]
    for key in (
        "inactivityTimeout",
        "abortTimeout",
        "journalRetention",
        "idempotencyRetention",
        "enableLazyState",
        "ingressPrivate",
        "retryPolicyInitialInterval",
        "retryPolicyMaxInterval",
        "retryPolicyMaxAttempts",
        "retryPolicyExponentiationFactor",
        "retryPolicyOnMaxAttempts",
        "documentation",
        "metadata",
    ):
        assert key in svc, key
    assert svc["handlers"][0]["workflowCompletionRetention"] == 1
    assert decode_manifest(encode_manifest(m, 4)) == m
    v3 = json.loads(encode_manifest(m, 3))
    assert "lambdaCompression" not in v3 and "retryPolicyMaxAttempts" not in v3["services"][0]
    assert v3["services"][0]["journalRetention"] == 86_400_000
    v2 = json.loads(encode_manifest(m, 2))
    assert "journalRetention" not in v2["services"][0]
    assert "workflowCompletionRetention" not in v2["services"][0]["handlers"][0]
    assert v2["services"][0]["documentation"] == "docs"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{", "not valid JSON"),
        (b'{"minProtocolVersion": 5, "services": []}', "maxProtocolVersion"),
        (b'{"minProtocolVersion": 0, "maxProtocolVersion": 6, "services": []}', ">= 1"),
        (b'{"minProtocolVersion": 6, "maxProtocolVersion": 5, "services": []}', "> max"),
        (
            b'{"minProtocolVersion": 5, "maxProtocolVersion": 6, "protocolMode": "X",'
            b' "services": []}',
            "protocolMode",
        ),
        (
            b'{"minProtocolVersion": 5, "maxProtocolVersion": 6, "services": '
            b'[{"name": "S", "ty": "SERVICE", "handlers": [{"name": "h", "ty": "EXCLUSIVE"}]}]}',
            "SERVICE",
        ),
        (
            b'{"minProtocolVersion": 5, "maxProtocolVersion": 6, "services": '
            b'[{"name": "S", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "h"}, {"name": "h"}]}]}',
            "twice",
        ),
        (
            b'{"minProtocolVersion": 5, "maxProtocolVersion": 6, "services": '
            b'[{"name": "S", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "h", '
            b'"inactivityTimeout": -1}]}]}',
            "inactivityTimeout",
        ),
    ],
)
def test_invalid_manifests(doc: bytes, reason: str) -> None:
    with pytest.raises(ManifestError, match=reason):
        decode_manifest(doc)


def test_unknown_fields_are_ignored() -> None:
    m = decode_manifest(
        b'{"minProtocolVersion": 5, "maxProtocolVersion": 6, "futureField": 1, "services": []}'
    )
    assert m.services == []
    assert msgspec.json.decode(encode_manifest(m)) == {
        "minProtocolVersion": 5,
        "maxProtocolVersion": 6,
        "services": [],
    }
