"""Request identity (v1): Ed25519-signed JWTs from the runtime, keys as ``publickeyv1_<base58>``.

``cryptography`` is imported only when keys are configured.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

PREFIX = "publickeyv1_"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


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


def parse_key(key: str) -> bytes:
    """The 32 raw Ed25519 public-key bytes of ``publickeyv1_…``."""
    if not key.startswith(PREFIX):
        raise ValueError(f"identity keys must start with {PREFIX}")
    raw = b58decode(key[len(PREFIX) :])
    if len(raw) != 32:
        raise ValueError(f"decoded key should have 32 bytes, has {len(raw)}")
    return raw


def _b64url(part: str) -> bytes:
    return binascii.a2b_base64(part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4))


class IdentityVerifier:
    """Verifies ``x-restate-jwt-v1`` against the configured keys (no keys: accept everything)."""

    def __init__(self, keys: list[str]) -> None:
        self._raw = [parse_key(k) for k in keys]
        self._keys: list[Any] | None = None

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._raw)

    def verify(self, headers: dict[str, str], path: str, now_s: float) -> None:
        """Raise :class:`IdentityError` unless the request is signed by one of the keys."""
        if not self._raw:
            return
        scheme = headers.get("x-restate-signature-scheme")
        if scheme is None:
            raise IdentityError("missing header x-restate-signature-scheme")
        if scheme == "unsigned":
            raise IdentityError("got an unsigned request, expecting signed requests")
        if scheme != "v1":
            raise IdentityError(f"bad x-restate-signature-scheme {scheme!r}")
        token = headers.get("x-restate-jwt-v1")
        if not token:
            raise IdentityError("missing header x-restate-jwt-v1")
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(_b64url(head_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(sig_b64)
        except (ValueError, binascii.Error) as e:
            raise IdentityError(f"malformed JWT: {e}") from None
        if header.get("alg") != "EdDSA":
            raise IdentityError(f"unexpected JWT algorithm {header.get('alg')!r}")
        self._check_signature(f"{head_b64}.{claims_b64}".encode(), signature)
        for claim in ("aud", "exp", "iat", "nbf"):
            if claim not in claims:
                raise IdentityError(f"JWT lacks the {claim!r} claim")
        aud = claims["aud"]
        if path not in (aud if isinstance(aud, list) else [aud]):
            raise IdentityError("JWT audience does not match the request path")
        if float(claims["exp"]) <= now_s or float(claims["nbf"]) > now_s:
            raise IdentityError("JWT is expired or not yet valid")

    def _check_signature(self, signing_input: bytes, signature: bytes) -> None:
        if self._keys is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._keys = [Ed25519PublicKey.from_public_bytes(k) for k in self._raw]
        from cryptography.exceptions import InvalidSignature

        for key in self._keys:
            try:
                key.verify(signature, signing_input)
                return
            except InvalidSignature:
                continue
        raise IdentityError("JWT signature matches none of the configured keys")
