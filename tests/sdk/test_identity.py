"""Request-identity verification in our SDK: 401 for every bad token, never another error.

The oracle for "valid" is the official SDK's verifier (restate-sdk 1.2's Rust core,
``PyIdentityVerifier``): on tokens derived from a valid one by Hypothesis, ours accepts exactly
when it does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restate_lambda.clock import SystemClock
from restate_lambda.identity import (
    MAX_TOKEN_CHARS,
    IdentityError,
    IdentityVerifier,
    b58decode,
    b58encode,
    format_key,
    normalise_path,
    parse_key,
)

KEY = Ed25519PrivateKey.generate()
PUBLIC = format_key(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
OTHER = Ed25519PrivateKey.generate()
PATH = "/invoke/Greeter/greet"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def now_s() -> int:
    return SystemClock().now_ms() // 1000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def good_claims(aud: Any = PATH, now: int | None = None) -> dict[str, Any]:
    t = now_s() if now is None else now
    return {"aud": aud, "exp": t + 60, "iat": t, "nbf": t - 60}


DEFAULT: Any = object()


def token(
    claims: Any = DEFAULT,
    header: Any = DEFAULT,
    key: Ed25519PrivateKey = KEY,
) -> str:
    head = b64(json.dumps({"typ": "JWT", "alg": "EdDSA"} if header is DEFAULT else header).encode())
    body = b64(json.dumps(good_claims() if claims is DEFAULT else claims).encode())
    return f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}"


def headers(jwt: str, scheme: str = "v1") -> dict[str, str]:
    return {"x-restate-signature-scheme": scheme, "x-restate-jwt-v1": jwt}


VERIFIER = IdentityVerifier([PUBLIC])


def accepted(hdrs: dict[str, str], path: str = PATH, now: float | None = None) -> bool:
    """True if ours accepts; False on IdentityError; any other exception fails the test."""
    try:
        VERIFIER.verify(hdrs, path, now_s() if now is None else now)
    except IdentityError:
        return False
    return True


def official_accepts(hdrs: dict[str, str], path: str = PATH) -> bool:
    from restate._internal import IdentityVerificationException, PyIdentityVerifier

    try:
        PyIdentityVerifier([PUBLIC]).verify(list(hdrs.items()), path)
    except IdentityVerificationException:
        return False
    return True


# ------------------------------------------------------------------------------- keys


def test_base58_round_trip_and_key_format() -> None:
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert parse_key(PUBLIC) == raw
    assert b58decode(b58encode(b"\0\0\x01\xff")) == b"\0\0\x01\xff"
    assert b58encode(b"\0\0") == "11"
    # restate-server's own test vector (crates/service-client request_identity/v1.rs)
    restate_kid = "publickeyv1_AfQwmwfgEZhrWpvv8N52SHpRtZqGGaFr4AZN6qtYWSiY"
    assert format_key(parse_key(restate_kid)) == restate_kid
    for bad in (restate_kid.removeprefix("publickeyv1_"), "publickeyv1_0OIl", "publickeyv1_1"):
        with pytest.raises(ValueError):
            parse_key(bad)


@given(st.binary(max_size=40))
def test_base58_round_trips_any_bytes(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_normalise_path_like_restates_sdks() -> None:
    cases = {
        "/invoke/a/b": "/invoke/a/b",
        "/foo/bar/invoke/a/b": "/invoke/a/b",
        "/foo/discover": "/discover",
        "/invoke/a": "/invoke/a",
        "/foo/invoke": "/foo/invoke",
        "": "",
        "///": "///",
        "foo/invoke/a/b": "/invoke/a/b",
    }
    assert {p: normalise_path(p) for p in cases} == cases


# ------------------------------------------------------------------------------- examples


def test_valid_token_accepted_by_ours_and_the_official_sdk() -> None:
    hdrs = headers(token())
    assert accepted(hdrs) and official_accepts(hdrs)
    assert accepted(hdrs, "/some/prefix" + PATH)  # served under a prefix
    assert accepted(headers(token(good_claims(aud=["/other", PATH]))))


def test_json_header_that_is_not_an_object_is_a_401() -> None:
    """The reproduced bug: ``[1]`` as JWT header raised AttributeError (a 500)."""
    for header in ([1], "EdDSA", 7, None, True):
        head = b64(json.dumps(header).encode())
        rest = token().split(".", 1)[1]
        assert not accepted(headers(f"{head}.{rest}"))
    for claims in ([PATH], "x", 1.5, None):
        assert not accepted(headers(token(claims)))


@pytest.mark.parametrize(
    ("why", "hdrs"),
    [
        ("no headers", {}),
        ("unsigned", {"x-restate-signature-scheme": "unsigned"}),
        ("unknown scheme", headers(token(), scheme="v2")),
        ("no jwt", {"x-restate-signature-scheme": "v1"}),
        ("empty jwt", headers("")),
        ("two parts", headers("a.b")),
        ("four parts", headers(token() + ".x")),
        ("alg none", headers(token(header={"alg": "none", "typ": "JWT"}))),
        ("alg HS256", headers(token(header={"alg": "HS256"}))),
        ("no alg", headers(token(header={"typ": "JWT"}))),
        ("kid not a string", headers(token(header={"alg": "EdDSA", "kid": 5}))),
        ("unknown header field", headers(token(header={"alg": "EdDSA", "zzz": 1}))),
        ("exp past u64", headers(token({**good_claims(), "exp": 2**64}))),
        ("nbf negative", headers(token({**good_claims(), "nbf": -1}))),
        ("other key", headers(token(key=OTHER))),
        ("wrong aud", headers(token(good_claims(aud="/invoke/Greeter/other")))),
        ("aud not a string", headers(token(good_claims(aud=7)))),
        ("aud list of junk", headers(token(good_claims(aud=[1, None])))),
        ("expired", headers(token(good_claims(now=now_s() - 3600)))),
        ("not yet valid", headers(token(good_claims(now=now_s() + 3600)))),
        ("exp a string", headers(token({**good_claims(), "exp": "9999999999"}))),
        ("exp a bool", headers(token({**good_claims(), "exp": True}))),
        ("nbf NaN", headers(token({**good_claims(), "nbf": float("nan")}))),
        ("no nbf", headers(token({k: v for k, v in good_claims().items() if k != "nbf"}))),
        ("no aud", headers(token({k: v for k, v in good_claims().items() if k != "aud"}))),
        ("no exp", headers(token({k: v for k, v in good_claims().items() if k != "exp"}))),
        ("padded base64", headers(".".join(p + "==" for p in token().split(".")))),
        ("std base64 chars", headers(token().replace("-", "+").replace("_", "/") + "+/")),
        ("junk in signature", headers(token()[:-10] + "!!" + token()[-8:])),
        ("short signature", headers(token().rsplit(".", 1)[0] + "." + b64(b"\1" * 63))),
        ("huge", headers("a" * (MAX_TOKEN_CHARS + 1))),
        ("huge valid-looking", headers(token({**good_claims(), "pad": "x" * 10_000}))),
        ("not utf-8 json", headers(".".join(b64(p) for p in (b"\xff\xfe", b"{}", b"1" * 64)))),
        ("deeply nested", headers(".".join(b64(p) for p in (b"[" * 3000, b"{}", b"1" * 64)))),
    ],
)
def test_bad_requests_are_rejected(why: str, hdrs: dict[str, str]) -> None:
    assert not accepted(hdrs), why


def test_signature_over_tampered_claims_is_rejected() -> None:
    head, _, sig = token().split(".")
    forged = b64(json.dumps(good_claims(aud="/invoke/Admin/drop")).encode())
    assert not accepted(headers(f"{head}.{forged}.{sig}"), "/invoke/Admin/drop")


def test_time_window_edges() -> None:
    t = now_s()
    hdrs = headers(token({"aud": PATH, "iat": t, "nbf": t, "exp": t}))
    assert accepted(hdrs, now=t) and accepted(hdrs, now=t + 0.9)
    assert not accepted(hdrs, now=t + 1) and not accepted(hdrs, now=t - 1)


def test_verified_tokens_are_cached_by_their_exact_text() -> None:
    verifier = IdentityVerifier([PUBLIC])
    jwt = token()
    now = now_s()
    verifier.verify(headers(jwt), PATH, now)
    assert list(verifier._verified) == [jwt]
    head, claims, sig = jwt.split(".")
    forged = f"{head}.{claims}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(IdentityError, match="signature"):
        verifier.verify(headers(forged), PATH, now)
    with pytest.raises(IdentityError, match="audience"):
        verifier.verify(headers(jwt), "/invoke/Greeter/other", now)  # cached, still checked
    with pytest.raises(IdentityError, match="expired"):
        verifier.verify(headers(jwt), PATH, now + 3600)
    for i in range(1500):
        verifier.verify(headers(token(good_claims(aud=f"/invoke/S/h{i}"))), f"/invoke/S/h{i}", now)
    assert 0 < len(verifier._verified) <= 1024


def test_no_keys_accepts_everything() -> None:
    IdentityVerifier([]).verify({"x-restate-jwt-v1": "junk"}, PATH, 0)


# ------------------------------------------------------------------------------- fuzzing

header_text = st.text(st.characters(codec="latin-1"), max_size=300)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["x-restate-signature-scheme", "x-restate-jwt-v1", "content-type", "x-other"]
        ),
        header_text | st.sampled_from(["v1", "unsigned"]),
    ),
    st.text(max_size=60),
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70),
)
def test_random_headers_never_raise_anything_but_identity_error(
    hdrs: dict[str, str], path: str, now: float
) -> None:
    try:
        accepted(hdrs, path, now)
    except OverflowError:  # an infinite "now" is the caller's bug, not the request's
        pass


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=400), st.binary(max_size=100))
def test_random_base64_parts_are_rejected(head: bytes, claims: bytes, sig: bytes) -> None:
    assert not accepted(headers(f"{b64(head)}.{b64(claims)}.{b64(sig)}"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from([PATH, "EdDSA", "JWT"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def mutated_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """A token from a valid one with some parts replaced, signed by our key or not; and a path."""
    t = now_s()
    header: Any = {"typ": "JWT", "alg": "EdDSA"}
    claims: Any = good_claims(now=t)
    if draw(st.booleans()):
        header = draw(
            json_values
            | st.fixed_dictionaries(
                {"alg": st.sampled_from(["EdDSA", "ES256", "none"]) | json_values},
                optional={
                    "typ": st.just("JWT") | json_values,
                    "kid": st.just(PUBLIC) | json_values,
                    "x5c": json_values,
                },
            )
        )
    if draw(st.booleans()):
        claims = draw(json_values)
    elif isinstance(claims, dict):
        for name in draw(st.lists(st.sampled_from(["aud", "exp", "iat", "nbf"]), max_size=4)):
            change = draw(st.sampled_from(["drop", "value", "far"]))
            if change == "drop":
                claims.pop(name, None)
            elif change == "value":
                claims[name] = draw(json_values)
            else:  # a time an hour off (away from the edges, so both sides agree on "now")
                claims[name] = t + draw(st.sampled_from([-3600, 3600]))
    key = draw(st.sampled_from([KEY, OTHER]))
    jwt = token(claims, header, key)
    if draw(st.booleans()):  # corrupt a character
        i = draw(st.integers(0, len(jwt) - 1))
        jwt = jwt[:i] + draw(st.sampled_from("A_-.=+/ ")) + jwt[i + 1 :]
    path = draw(st.sampled_from([PATH, "/prefix" + PATH, "/invoke/Greeter/other", "/discover"]))
    return jwt, path


def _standard_header(jwt: str) -> bool:
    """Whether the JWT header has only fields restate-server writes, as strings (on other
    fields ours is stricter than the official SDK, which reads certificate fields too)."""
    try:
        header = json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "==="))
    except Exception:
        return True
    if not isinstance(header, dict):
        return True
    return all(k in ("alg", "typ", "kid") and isinstance(v, str) for k, v in header.items())


@FUZZ
@given(mutated_tokens())
def test_mutated_tokens_agree_with_the_official_sdk(case: tuple[str, str]) -> None:
    jwt, path = case
    ours = accepted(headers(jwt), path)
    official = official_accepts(headers(jwt), path)
    assert official or not ours, f"accepted a token the official SDK rejects: {jwt}"
    if _standard_header(jwt):
        assert ours == official, jwt


def test_endpoint_answers_401_never_500() -> None:
    """Through the ASGI app: malformed identities are 401s, a good one reaches discovery."""
    import restate_lambda as restate
    from tests.sdk import services

    app = restate.app([services.svc], identity_keys=[PUBLIC])

    async def status(extra: list[tuple[bytes, bytes]], path: str = "/discover") -> int:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": path,
            "headers": extra,
        }
        seen = 0

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            nonlocal seen
            if message["type"] == "http.response.start":
                seen = int(message["status"])  # type: ignore[call-overload]

        await app(scope, receive, send)
        return seen

    def enc(h: dict[str, str]) -> list[tuple[bytes, bytes]]:
        return [(k.encode(), v.encode("latin-1")) for k, v in h.items()]

    async def go() -> None:
        head = b64(b"[1]")
        assert await status(enc(headers(f"{head}.{head}.{head}"))) == 401
        assert await status(enc(headers("\u00ff" * 50))) == 401
        assert await status(enc(headers(token(good_claims(aud="/discover"))))) == 200

    asyncio.run(go())
