"""The runtime signs every request to a deployment as restate-server does.

Tokens are checked by our SDK's verifier and by the official SDK's (restate-sdk 1.2's Rust core);
the in-process runtime is driven end to end against apps that require the signature.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from infra.testing import test_environment as make_environment
from invoker.exchange import Exchange, Reply
from invoker.request_identity import LEEWAY_S, KeyFormatError, RequestSigner, generate_pem
from invoker.transport import SigningTransport, Transports
from restate_lambda.clock import ManualClock, SystemClock
from restate_lambda.identity import IdentityError, IdentityVerifier

PATH = "/invoke/Greeter/greet"


def parts(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, claims, _ = (base64.urlsafe_b64decode(p + "===") for p in jwt.split("."))
    return json.loads(head), json.loads(claims)


def official_accepts(public_key: str, headers: dict[str, str], path: str) -> bool:
    from restate._internal import IdentityVerificationException, PyIdentityVerifier

    try:
        PyIdentityVerifier([public_key]).verify(list(headers.items()), path)
    except IdentityVerificationException:
        return False
    return True


def test_token_shape_follows_restate_server() -> None:
    clock = ManualClock(1_800_000_000_500)
    signer = RequestSigner.from_pem(generate_pem(), clock)
    header, claims = parts(signer.token(PATH))
    assert header == {"typ": "JWT", "alg": "EdDSA", "kid": signer.public_key}
    assert claims == {
        "aud": PATH,
        "iat": 1_800_000_000,
        "nbf": 1_800_000_000 - LEEWAY_S,
        "exp": 1_800_000_000 + LEEWAY_S,
    }
    assert signer.public_key.startswith("publickeyv1_")


def test_tokens_verify_with_both_sdks_for_their_path_only() -> None:
    signer = RequestSigner.from_pem(generate_pem())  # system clock: the official SDK's clock
    verifier = IdentityVerifier([signer.public_key])
    for path in (PATH, "/discover"):
        headers = signer.headers(path)
        assert headers["x-restate-signature-scheme"] == "v1"
        verifier.verify(headers, path, SystemClock().now_ms() / 1000)
        assert official_accepts(signer.public_key, headers, path)
        assert official_accepts(signer.public_key, headers, "/some/prefix" + path)
    other = "/invoke/Greeter/other"
    assert not official_accepts(signer.public_key, signer.headers(PATH), other)
    with pytest.raises(IdentityError):
        verifier.verify(signer.headers(PATH), other, SystemClock().now_ms() / 1000)
    stranger = RequestSigner.from_pem(generate_pem())
    assert not official_accepts(signer.public_key, stranger.headers(PATH), PATH)


def test_time_claims_follow_the_injected_clock() -> None:
    clock = ManualClock()
    signer = RequestSigner.from_pem(generate_pem(), clock)
    verifier = IdentityVerifier([signer.public_key])
    first = signer.token(PATH)
    assert signer.token(PATH) is first  # same second: the cached token
    clock.advance(999 - clock.now_ms() % 1000)
    assert signer.token(PATH) is first
    clock.advance(1)
    second = signer.token(PATH)
    assert second != first
    assert parts(second)[1]["iat"] == parts(first)[1]["iat"] + 1
    now_s = clock.now_ms() / 1000
    verifier.verify(signer.headers(PATH), PATH, now_s)
    # a token is good for LEEWAY_S seconds after it was made, then expires
    verifier.verify(
        {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": second}, PATH, now_s + LEEWAY_S
    )
    with pytest.raises(IdentityError, match="expired"):
        verifier.verify(
            {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": second},
            PATH,
            now_s + LEEWAY_S + 1,
        )


def test_cache_is_bounded() -> None:
    signer = RequestSigner.from_pem(generate_pem(), ManualClock())
    for i in range(10_000):
        signer.token(f"/invoke/S{i}/h")
    assert len(signer._cache) <= 4096


def test_key_must_be_one_ed25519_pem() -> None:
    ec = generate_private_key(SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    pem = generate_pem()
    for bad, why in (
        (ec, "not Ed25519"),
        (pem + pem, "2 PEM"),
        (b"junk", "0 PEM"),
        (pem.replace(b"M", b"N", 3), "cannot read"),
    ):
        with pytest.raises(KeyFormatError, match=why):
            RequestSigner.from_pem(bad)
    assert RequestSigner.from_pem(pem.decode()).public_key == RequestSigner.from_pem(pem).public_key


class Recorder:
    """A transport that records what it was asked to send."""

    def __init__(self) -> None:
        self.seen: list[Exchange] = []

    async def exchange(self, address: str, request: Exchange) -> Reply:
        self.seen.append(request)
        return Reply(200)

    async def close(self) -> None:
        pass


async def test_transports_sign_every_scheme_and_replace_forged_headers() -> None:
    signer = RequestSigner.from_pem(generate_pem())
    http, lambda_ = Recorder(), Recorder()
    transports = Transports(http=http, lambda_=lambda_, signer=signer)
    forged = {"X-Restate-Jwt-V1": "forged", "x-restate-signature-scheme": "unsigned", "a": "b"}
    for address, recorder in (
        ("http://h:9080", http),
        ("arn:aws:lambda:r:1:function:f:1", lambda_),
    ):
        transport = transports.for_address(address)
        assert isinstance(transport, SigningTransport)
        request = Exchange("POST", PATH, dict(forged))
        await transport.exchange(address, request)
        sent = recorder.seen[-1]
        assert request.headers == forged  # the caller's request is not modified
        assert sent.headers["a"] == "b" and "X-Restate-Jwt-V1" not in sent.headers
        assert sent.headers["x-restate-jwt-v1"] == signer.token(PATH)
        assert sent.headers["x-restate-signature-scheme"] == "v1"
    unsigned = Transports(http=http)
    assert unsigned.for_address("http://h") is http


async def test_runtime_signs_discovery_and_invocations_in_process() -> None:
    """Our SDK requiring our runtime's key: registration and calls work only when signed."""
    import restate_lambda as restate
    from invoker.api import BadRequestError
    from tests.sdk import services

    async with make_environment() as env:
        signer = RequestSigner.from_pem(generate_pem())
        app = restate.app([services.svc], identity_keys=[signer.public_key])
        uri = env.engine.transports.asgi.mount("signed", app)
        with pytest.raises(BadRequestError, match="401"):
            await env.engine.register_deployment(uri)  # unsigned discovery is refused
        env.engine.transports.signer = signer
        await env.engine.register_deployment(uri)
        r = await env.ingress.post("/Svc/greet", json="Signed")
        assert r.status_code == 200, r.text
        # a signer whose key the app does not know: the attempt gets a 401 and is retried
        env.engine.transports.signer = RequestSigner.from_pem(generate_pem())
        r = await env.ingress.post("/Svc/greet/send", json="Stranger")
        assert r.status_code == 202
        invocation = r.json()["invocationId"]
        await env.settle()
        status = await env.admin.get(f"/invocations/{invocation}")
        assert "401" in status.text, status.text
        # the right key again: the retry (after its backoff) succeeds
        env.engine.transports.signer = signer
        await env.advance(timedelta(seconds=30))
        out = await env.ingress.get(f"/restate/invocation/{invocation}/output")
        assert out.status_code == 200 and out.json() == "Hello, Stranger!", out.text
