"""Restate-format identifiers: invocation ids, awakeable ids, deployment/subscription ids.

String form of Restate ids (scheme version ``1``)::

    <resource>_1<payload>

For invocation ids the payload is the base62 encoding of the u64 partition key
(11 characters) followed by the u128 invocation uuid (22 characters). Each integer
is first byte-swapped (Restate writes ``value.to_be()`` on little-endian hosts) and
then written in base62 with the alphabet ``0-9a-zA-Z``, left-padded with ``0``.
The raw form (``StartMessage.id``) is ``partition_key (8 bytes BE) ‖ uuid (16 bytes BE)``.

Awakeable ids are ``sign_1`` + unpadded base64url(raw invocation id ‖ u32-BE signal
index); the legacy form uses the ``prom_1`` prefix with the same payload.
"""

from __future__ import annotations

import base64
import binascii
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ClassVar, Self

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}
_SCHEME_VERSION = "1"

U64_CHARS = 11
U128_CHARS = 22
_MAX_U64 = (1 << 64) - 1
_MAX_U128 = (1 << 128) - 1


# --- base62 ------------------------------------------------------------------------------


def _byteswap(value: int, nbytes: int) -> int:
    return int.from_bytes(value.to_bytes(nbytes, "big"), "little")


def base62_encode_fixed(value: int, nbytes: int) -> str:
    """Restate's fixed-width base62 form of an unsigned ``nbytes``-byte integer."""
    width = -(-nbytes * 8 // 6)
    n = _byteswap(value, nbytes)
    digits: list[str] = []
    while n:
        n, r = divmod(n, 62)
        digits.append(_ALPHABET[r])
    return "".join(reversed(digits)).rjust(width, "0")


def base62_decode_fixed(text: str, nbytes: int) -> int:
    """Inverse of :func:`base62_encode_fixed`; ValueError on bad characters or overflow."""
    n = 0
    for c in text:
        d = _DIGIT.get(c)
        if d is None:
            raise ValueError(f"invalid base62 character {c!r}")
        n = n * 62 + d
    if n >> (nbytes * 8):
        raise ValueError("base62 value does not fit in the id field")
    return _byteswap(n, nbytes)


def _split_prefix(text: str, expected: tuple[str, ...], what: str) -> tuple[str, str]:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    resource, sep, rest = text.partition("_")
    if not sep or not rest:
        raise ValueError(f"malformed {what} {text!r}: expected '<prefix>_1…'")
    if resource not in expected:
        raise ValueError(
            f"malformed {what} {text!r}: prefix {resource!r} is not "
            + " or ".join(repr(p) for p in expected)
        )
    if rest[0] != _SCHEME_VERSION:
        raise ValueError(f"malformed {what} {text!r}: unsupported id scheme version {rest[0]!r}")
    return resource, rest[1:]


class _RandomPool:
    """Random bytes from the OS, read 4 KiB at a time: one syscall per ~200 ids instead of
    one per id (system calls are expensive in sandboxed and serverless runtimes)."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf, self._pos = os.urandom(max(4096, n)), 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out


_POOL = _RandomPool()


def random_token(nbytes: int) -> str:
    """``nbytes`` random bytes from the OS as URL-safe base64 text, as
    :func:`secrets.token_urlsafe` makes it, from the pooled bytes (no system call each)."""
    return base64.urlsafe_b64encode(_POOL.take(nbytes)).rstrip(b"=").decode("ascii")


def _randbits(n: int) -> int:
    return int.from_bytes(_POOL.take((n + 7) // 8), "big") >> (-n % 8)


def _digest(domain: str, parts: tuple[bytes | str, ...]) -> bytes:
    import hashlib

    h = hashlib.sha256(domain.encode())
    for part in parts:
        raw = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.digest()


class _Frozen:
    """Minimal immutable value object (avoids importing dataclasses at startup)."""

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Frozen)
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Frozen)
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._key()))


_system_now_ms: Callable[[], int] | None = None


def _now_ms() -> int:
    global _system_now_ms
    if _system_now_ms is None:  # imported on first use, not with this module
        from restate_lambda.clock import SystemClock

        _system_now_ms = SystemClock().now_ms
    return _system_now_ms()


def new_ulid(now_ms: int | None = None) -> int:
    """A ULID as a u128: 48-bit millisecond timestamp + 80 random bits (never 0)."""
    ts = _now_ms() if now_ms is None else now_ms
    return ((ts & ((1 << 48) - 1)) << 80) | _randbits(80) or 1


# --- invocation ids ----------------------------------------------------------------------


class InvocationId(_Frozen):
    """A Restate invocation id: u64 partition key + u128 uuid (a ULID or a hash)."""

    __slots__ = ("partition_key", "uuid")

    PREFIX: ClassVar[str] = "inv"
    RAW_LEN: ClassVar[int] = 24
    STR_LEN: ClassVar[int] = 38

    partition_key: int
    uuid: int

    def __init__(self, partition_key: int, uuid: int) -> None:
        if not 0 <= partition_key <= _MAX_U64:
            raise ValueError(f"partition key {partition_key} is not a u64")
        if not 0 <= uuid <= _MAX_U128:
            raise ValueError(f"invocation uuid {uuid} is not a u128")
        object.__setattr__(self, "partition_key", partition_key)
        object.__setattr__(self, "uuid", uuid)

    def _key(self) -> tuple[object, ...]:
        return (self.partition_key, self.uuid)

    @classmethod
    def new(cls, partition_key: int | None = None, *, now_ms: int | None = None) -> Self:
        """A fresh id: random partition key unless given, ULID uuid."""
        pk = _randbits(64) if partition_key is None else partition_key
        return cls(pk, new_ulid(now_ms))

    @classmethod
    def derive(cls, *parts: bytes | str) -> Self:
        """A deterministic id from what defines the invocation (e.g. target + idempotency key).

        SHA-256 over the length-prefixed parts; first 8 digest bytes = partition key,
        next 16 = uuid.
        """
        d = _digest("restate-lambda/invocation-id", parts)
        return cls(int.from_bytes(d[:8], "big"), int.from_bytes(d[8:24], "big") or 1)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> Self:
        """From the 24 raw bytes (``StartMessage.id``)."""
        raw = bytes(raw)
        if len(raw) != cls.RAW_LEN:
            raise ValueError(f"invocation id must be {cls.RAW_LEN} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))

    def to_bytes(self) -> bytes:
        """The 24 raw bytes: partition key (8, BE) ‖ uuid (16, BE)."""
        return self.partition_key.to_bytes(8, "big") + self.uuid.to_bytes(16, "big")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the ``inv_1…`` string form; ValueError with a reason if malformed."""
        _, body = _split_prefix(text, (cls.PREFIX,), "invocation id")
        if len(body) != U64_CHARS + U128_CHARS:
            raise ValueError(
                f"malformed invocation id {text!r}: expected {cls.STR_LEN} characters, "
                f"got {len(text)}"
            )
        try:
            pk = base62_decode_fixed(body[:U64_CHARS], 8)
            uuid = base62_decode_fixed(body[U64_CHARS:], 16)
        except ValueError as e:
            raise ValueError(f"malformed invocation id {text!r}: {e}") from None
        return cls(pk, uuid)

    @property
    def timestamp_ms(self) -> int:
        """Creation time if the uuid is a ULID (meaningless for derived ids)."""
        return self.uuid >> 80

    def __str__(self) -> str:
        return (
            f"{self.PREFIX}_{_SCHEME_VERSION}"
            f"{base62_encode_fixed(self.partition_key, 8)}{base62_encode_fixed(self.uuid, 16)}"
        )

    def __repr__(self) -> str:
        return f"InvocationId({self})"


def is_invocation_id(text: str) -> bool:
    """True if ``text`` parses as an invocation id."""
    try:
        InvocationId.parse(text)
    except ValueError:
        return False
    return True


# --- awakeable ids -----------------------------------------------------------------------

_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), without importing :mod:`base64`."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; binascii.Error/ValueError if invalid."""
    raw = text.encode("ascii")
    if b"+" in raw or b"/" in raw:
        raise ValueError("not base64url")
    raw = raw.rstrip(b"=").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)


AWAKEABLE_PREFIX = "sign_1"
LEGACY_AWAKEABLE_PREFIX = "prom_1"
#: First signal index available to awakeables (1..16 are built-in signals, 1 = CANCEL).
FIRST_AWAKEABLE_SIGNAL_INDEX = 17


def encode_awakeable_id(invocation_id: bytes, signal_index: int) -> str:
    """``sign_1`` + base64url(raw id ‖ u32-BE index), unpadded (what SDKs hand to users)."""
    if not 0 <= signal_index <= 0xFFFF_FFFF:
        raise ValueError(f"signal index {signal_index} is not a u32")
    payload = bytes(invocation_id) + signal_index.to_bytes(4, "big")
    return AWAKEABLE_PREFIX + _b64url_encode(payload)


class AwakeableId(_Frozen):
    """An awakeable: (invocation, signal index). ``legacy`` marks the old ``prom_1`` form,
    where the index was a journal entry index rather than a signal index."""

    __slots__ = ("invocation_id", "legacy", "signal_index")

    invocation_id: InvocationId
    signal_index: int
    legacy: bool

    def __init__(
        self, invocation_id: InvocationId, signal_index: int, legacy: bool = False
    ) -> None:
        if not 0 <= signal_index <= 0xFFFF_FFFF:
            raise ValueError(f"signal index {signal_index} is not a u32")
        object.__setattr__(self, "invocation_id", invocation_id)
        object.__setattr__(self, "signal_index", signal_index)
        object.__setattr__(self, "legacy", legacy)

    def _key(self) -> tuple[object, ...]:
        return (self.invocation_id.to_bytes(), self.signal_index, self.legacy)

    def __repr__(self) -> str:
        return f"AwakeableId({self})"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Decode ``sign_1…`` (or legacy ``prom_1…``); ValueError if malformed."""
        resource, body = _split_prefix(text, ("sign", "prom"), "awakeable id")
        try:
            raw = _b64url_decode(body)
        except (binascii.Error, ValueError):
            raise ValueError(f"malformed awakeable id {text!r}: not base64url") from None
        if len(raw) != InvocationId.RAW_LEN + 4:
            raise ValueError(
                f"malformed awakeable id {text!r}: payload has {len(raw)} bytes, "
                f"expected {InvocationId.RAW_LEN + 4}"
            )
        return cls(
            InvocationId.from_bytes(raw[: InvocationId.RAW_LEN]),
            int.from_bytes(raw[InvocationId.RAW_LEN :], "big"),
            legacy=resource == "prom",
        )

    def __str__(self) -> str:
        s = encode_awakeable_id(self.invocation_id.to_bytes(), self.signal_index)
        return LEGACY_AWAKEABLE_PREFIX + s[len(AWAKEABLE_PREFIX) :] if self.legacy else s


# --- ULID-backed resource ids (deployments, subscriptions, …) -------------------------------


class _UlidResourceId(_Frozen):
    """Common form of ULID-backed ids: ``<prefix>_1`` + 22 base62 characters."""

    __slots__ = ("value",)

    PREFIX: ClassVar[str] = ""

    value: int

    def __init__(self, value: int) -> None:
        if not 0 <= value <= _MAX_U128:
            raise ValueError(f"{self.PREFIX} id value {value} is not a u128")
        object.__setattr__(self, "value", value)

    def _key(self) -> tuple[object, ...]:
        return (self.value,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"

    @classmethod
    def new(cls, *, now_ms: int | None = None) -> Self:
        """A fresh ULID-based id."""
        return cls(new_ulid(now_ms))

    @classmethod
    def derive(cls, *parts: bytes | str) -> Self:
        """A deterministic id from the given parts (SHA-256, first 16 bytes)."""
        d = _digest(f"restate-lambda/{cls.PREFIX}", parts)
        return cls(int.from_bytes(d[:16], "big") or 1)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the string form; ValueError with a reason if malformed."""
        what = f"{cls.PREFIX} id"
        _, body = _split_prefix(text, (cls.PREFIX,), what)
        if len(body) != U128_CHARS:
            raise ValueError(
                f"malformed {what} {text!r}: expected {len(cls.PREFIX) + 2 + U128_CHARS} "
                f"characters, got {len(text)}"
            )
        try:
            return cls(base62_decode_fixed(body, 16))
        except ValueError as e:
            raise ValueError(f"malformed {what} {text!r}: {e}") from None

    def to_bytes(self) -> bytes:
        """The 16 raw ULID bytes (BE)."""
        return self.value.to_bytes(16, "big")

    @property
    def timestamp_ms(self) -> int:
        """ULID creation time in epoch milliseconds."""
        return self.value >> 80

    def __str__(self) -> str:
        return f"{self.PREFIX}_{_SCHEME_VERSION}{base62_encode_fixed(self.value, 16)}"


class DeploymentId(_UlidResourceId):
    """A deployment id, ``dp_1…``."""

    __slots__ = ()

    PREFIX: ClassVar[str] = "dp"


class SubscriptionId(_UlidResourceId):
    """A Kafka subscription id, ``sub_1…``."""

    __slots__ = ()

    PREFIX: ClassVar[str] = "sub"
