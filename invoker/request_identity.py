"""Sign requests to deployments the way restate-server does (request identity v1).

Every request the runtime sends to a deployment (discovery and invocations, over HTTP, in
process or through Lambda) carries ``x-restate-signature-scheme: v1`` and ``x-restate-jwt-v1``,
a JWT signed with the runtime's Ed25519 key:

* header ``{"typ":"JWT","alg":"EdDSA","kid":"publickeyv1_<base58>"}``;
* claims ``{"aud": PATH, "exp": now+60, "iat": now, "nbf": now-60}``, ``PATH`` being the request
  path relative to the deployment (``/discover``, ``/invoke/Service/handler``), times in Unix
  seconds from the injected clock.

Restate's SDKs configured with ``identity_keys=["publickeyv1_…"]`` (our
:mod:`restate_lambda.identity` as well) then accept only this runtime. The key file is a PKCS#8
PEM, the format of restate-server's ``request-identity-private-key-pem-file``: the same file
serves both runtimes.

Cost: Ed25519 signatures are deterministic, so a token depends only on the path and the second;
the signer keeps the last token per path and signs at most once per path and second.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from invoker.exchange import Exchange
from restate_lambda.clock import Clock, SystemClock
from restate_lambda.identity import JWT_HEADER, SCHEME_HEADER, format_key

#: Seconds before and after "now" a token is valid (restate-server's ``LEEWAY_SECONDS``).
LEEWAY_S: Final = 60
#: Paths whose last token is kept (the handlers of every deployment, plus ``/discover``).
_CACHE_SIZE: Final = 4096


class KeyFormatError(ValueError):
    """The private key is not a single Ed25519 key in PEM (PKCS#8)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class RequestSigner:
    """Makes the request-identity headers for one private key.

    Args:
        private_key: the runtime's Ed25519 key.
        clock: the source of the JWT's time claims (default: the system clock).
    """

    def __init__(self, private_key: Ed25519PrivateKey, clock: Clock | None = None) -> None:
        self._key = private_key
        self._clock: Clock = clock or SystemClock()
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key: Final = format_key(raw)
        header = {"typ": "JWT", "alg": "EdDSA", "kid": self.public_key}
        self._head = _b64url(json.dumps(header, separators=(",", ":")).encode())
        self._cache: dict[str, tuple[int, str]] = {}

    @classmethod
    def from_pem(cls, pem: bytes | str, clock: Clock | None = None) -> RequestSigner:
        """A signer for the Ed25519 private key in ``pem`` (PKCS#8, unencrypted)."""
        data = pem.encode() if isinstance(pem, str) else pem
        blocks = data.count(b"-----BEGIN ")
        if blocks != 1:
            raise KeyFormatError(f"expected one PEM private key, found {blocks} PEM blocks")
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"cannot read the private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(f"the private key is {type(key).__name__}, not Ed25519")
        return cls(key, clock)

    def token(self, path: str) -> str:
        """The ``x-restate-jwt-v1`` JWT for a request to ``path``, valid for 60 s either side."""
        now = self._clock.now_ms() // 1000
        cached = self._cache.get(path)
        if cached is not None and cached[0] == now:
            return cached[1]
        claims = json.dumps(
            {"aud": path, "exp": now + LEEWAY_S, "iat": now, "nbf": max(now - LEEWAY_S, 0)},
            separators=(",", ":"),
        )
        signing_input = f"{self._head}.{_b64url(claims.encode())}"
        jwt = f"{signing_input}.{_b64url(self._key.sign(signing_input.encode()))}"
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[path] = (now, jwt)
        return jwt

    def headers(self, path: str) -> dict[str, str]:
        """The two request-identity headers for a request to ``path``."""
        return {SCHEME_HEADER: "v1", JWT_HEADER: self.token(path)}

    def sign(self, request: Exchange) -> Exchange:
        """A copy of ``request`` with the identity headers (replacing any it had)."""
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in (SCHEME_HEADER, JWT_HEADER)
        }
        headers[SCHEME_HEADER] = "v1"
        headers[JWT_HEADER] = self.token(request.path)
        return dataclasses.replace(request, headers=headers)


def generate_pem() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM (what ``openssl genpkey -algorithm ed25519``
    writes, and what restate-server reads)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
