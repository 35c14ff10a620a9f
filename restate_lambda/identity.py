"""Request identity (v1): Ed25519-signed JWTs from the runtime, keys as ``publickeyv1_<base58>``.

The runtime (restate-server, or ours: :mod:`invoker.request_identity`) signs every request to a
deployment with headers ``x-restate-signature-scheme: v1`` and ``x-restate-jwt-v1: <JWT>``; the JWT
has header ``{"typ": "JWT", "alg": "EdDSA", "kid": "publickeyv1_…"}`` and claims ``aud`` (the
request path, ``/invoke/Service/handler`` or ``/discover``), ``iat``, ``nbf`` and ``exp`` (Unix
seconds; restate-server allows 60 s either side). An endpoint configured with
``identity_keys=[...]`` accepts a request only when the JWT verifies under one of them; this
module does that check with the rules of Restate's SDKs (``sdk-shared-core``
``request_identity.rs``).

:meth:`IdentityVerifier.verify` raises :class:`IdentityError` (answered with 401) for every
request it rejects, whatever the headers hold, and nothing else.

``cryptography`` is imported only when keys are configured.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from typing import Any, Final

PREFIX: Final = "publickeyv1_"
SCHEME_HEADER: Final = "x-restate-signature-scheme"
JWT_HEADER: Final = "x-restate-jwt-v1"
#: Longest ``x-restate-jwt-v1`` accepted. restate-server's tokens are about 300 bytes; anything
#: far longer is refused before any decoding.
MAX_TOKEN_CHARS: Final = 4096
_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_HEADER_FIELDS: Final = frozenset({"alg", "typ", "kid", "cty"})
_VERIFIED_CACHE_SIZE: Final = 1024
#: What a verified token grants: its audiences, ``exp`` and ``nbf``.
_Checked = tuple[tuple[str, ...], int, int]


class IdentityError(Exception):
    """The request does not carry a valid identity (answer 401)."""


def b58decode(text: str) -> bytes:
    """Decode Bitcoin-alphabet base58."""
    n = 0
    for c in text:
        i = _B58.find(c)
        if i < 0:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + i
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + raw


def b58encode(data: bytes) -> str:
    """Encode ``data`` in Bitcoin-alphabet base58 (leading zero bytes become ``1``)."""
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_B58[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def format_key(raw: bytes) -> str:
    """``publickeyv1_<base58>`` of a 32-byte raw Ed25519 public key."""
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return PREFIX + b58encode(raw)


def parse_key(key: str) -> bytes:
    """The 32 raw Ed25519 public-key bytes of ``publickeyv1_…``."""
    if not key.startswith(PREFIX):
        raise ValueError(f"identity keys must start with {PREFIX}")
    raw = b58decode(key[len(PREFIX) :])
    if len(raw) != 32:
        raise ValueError(f"decoded key should have 32 bytes, has {len(raw)}")
    return raw


def normalise_path(path: str) -> str:
    """The part of a request path a JWT's ``aud`` names (as Restate's SDKs compute it).

    An endpoint served under a prefix sees ``/prefix/invoke/S/h`` or ``/prefix/discover`` while
    the runtime signs the path relative to the deployment URL: ``/invoke/S/h``, ``/discover``.
    """
    slashes = [i for i, c in enumerate(path) if c == "/"]
    if len(slashes) >= 3 and path[slashes[-3] : slashes[-2]] == "/invoke":
        return path[slashes[-3] :]
    if slashes and path[slashes[-1] :] == "/discover":
        return path[slashes[-1] :]
    return path


def _b64url(part: str) -> bytes:
    """Strict unpadded base64url (RFC 7515): any other character is an error."""
    if _B64URL.fullmatch(part) is None or len(part) % 4 == 1:
        raise ValueError("not unpadded base64url")
    padded = part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and binascii.Error included
        raise IdentityError(f"malformed JWT {what}: {e}") from None
    if not isinstance(value, dict):
        raise IdentityError(f"malformed JWT {what}: not a JSON object")
    return value


def _seconds(claims: dict[str, Any], name: str) -> int:
    """A time claim: a number of seconds in [0, 2**64), like the ``u64`` Restate's SDKs read."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdentityError(f"JWT claim {name!r} is not a number")
    if not 0 <= value < 2**64:  # NaN fails this too
        raise IdentityError(f"JWT claim {name!r} is out of range")
    return math.floor(value)


def _check_header(header: dict[str, Any]) -> None:
    """``alg`` EdDSA; besides, only the fields restate-server writes (``typ``, ``kid``) and
    ``cty``, as strings. Stricter than Restate's SDKs, which also take certificate fields."""
    if header.get("alg") != "EdDSA":
        raise IdentityError(f"unexpected JWT algorithm {str(header.get('alg'))[:20]!r}")
    for name, value in header.items():
        if name not in _HEADER_FIELDS:
            raise IdentityError(f"unexpected JWT header field {name[:20]!r}")
        if value is not None and not isinstance(value, str):
            raise IdentityError(f"JWT header field {name!r} is not a string")


class IdentityVerifier:
    """Verifies ``x-restate-jwt-v1`` against the configured keys (no keys: accept everything)."""

    def __init__(self, keys: list[str]) -> None:
        self._raw = [parse_key(k) for k in keys]
        self._keys: list[Any] | None = None
        #: Tokens whose signature and shape were verified: a runtime sends the same token to a
        #: path for a second (Ed25519 is deterministic), so most requests skip the signature.
        self._verified: dict[str, _Checked] = {}

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._raw)

    def verify(self, headers: dict[str, str], path: str, now_s: float) -> None:
        """Raise :class:`IdentityError` unless the request is signed by one of the keys.

        ``headers`` have lower-case names; ``path`` is the request path (a prefix before
        ``/invoke/…`` or ``/discover`` is ignored, see :func:`normalise_path`); ``now_s`` is the
        current Unix time. Accepted: ``nbf <= now <= exp``, ``aud`` equal to the path (or a list
        holding it), ``alg`` EdDSA, and a valid signature by a configured key. Every other input
        raises :class:`IdentityError`, never another exception.
        """
        if not self._raw:
            return
        try:
            self._verify(headers, path, now_s)
        except IdentityError:
            raise
        except Exception as e:  # a malformed request must be a 401, never a 500
            raise IdentityError(f"malformed request identity ({type(e).__name__})") from None

    def _verify(self, headers: dict[str, str], path: str, now_s: float) -> None:
        scheme = headers.get(SCHEME_HEADER)
        if scheme is None:
            raise IdentityError(f"missing header {SCHEME_HEADER}")
        if scheme == "unsigned":
            raise IdentityError("got an unsigned request, expecting signed requests")
        if scheme != "v1":
            raise IdentityError(f"bad {SCHEME_HEADER} {scheme[:40]!r}")
        token = headers.get(JWT_HEADER)
        if not token:
            raise IdentityError(f"missing header {JWT_HEADER}")
        if len(token) > MAX_TOKEN_CHARS:
            raise IdentityError(f"JWT longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 3:
            raise IdentityError("malformed JWT: expected three dot-separated parts")
        head_b64, claims_b64, sig_b64 = parts
        checked = self._verified.get(token)
        if checked is None:
            checked = self._decode(head_b64, claims_b64, sig_b64)
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = checked
        audiences, exp, nbf = checked
        if normalise_path(path) not in audiences:
            raise IdentityError("JWT audience does not match the request path")
        now = math.floor(now_s)
        if exp < now:
            raise IdentityError("JWT has expired")
        if nbf > now:
            raise IdentityError("JWT is not valid yet")

    def _decode(self, head_b64: str, claims_b64: str, sig_b64: str) -> _Checked:
        """Audiences, ``exp`` and ``nbf`` of a well-formed token signed by one of the keys."""
        _check_header(_json_object(head_b64, "header"))
        claims = _json_object(claims_b64, "claims")
        try:
            signature = _b64url(sig_b64)
        except ValueError as e:
            raise IdentityError(f"malformed JWT signature: {e}") from None
        self._check_signature(f"{head_b64}.{claims_b64}".encode("ascii"), signature)
        # Restate's SDKs list iat as required, but their JWT library checks only exp, nbf and aud
        # for presence; so do we (restate-server always sends all four).
        for claim in ("aud", "exp", "nbf"):
            if claim not in claims:
                raise IdentityError(f"JWT lacks the {claim!r} claim")
        aud = claims["aud"]
        audiences = tuple(aud) if isinstance(aud, list) else (aud,)
        if not all(isinstance(a, str) for a in audiences):
            raise IdentityError("JWT claim 'aud' is neither a string nor a list of strings")
        return audiences, _seconds(claims, "exp"), _seconds(claims, "nbf")

    def _check_signature(self, signing_input: bytes, signature: bytes) -> None:
        if self._keys is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._keys = [Ed25519PublicKey.from_public_bytes(k) for k in self._raw]
        from cryptography.exceptions import InvalidSignature

        if len(signature) != 64:
            raise IdentityError("JWT signature is not an Ed25519 signature")
        for key in self._keys:
            try:
                key.verify(signature, signing_input)
                return
            except InvalidSignature:
                continue
        raise IdentityError("JWT signature matches none of the configured keys")
