"""Syntactic checks of Restate invocation and awakeable ids (before asking the engine)."""

from __future__ import annotations

import base64
import binascii
import string

from restate_lambda.protocol.ids import AwakeableId

_BASE62 = frozenset(string.digits + string.ascii_letters)
_INVOCATION_PREFIX = "inv_"
#: base62 of the partition key (u64, 11 chars) + invocation uuid (u128, 22 chars).
_INVOCATION_PAYLOAD_LEN = 33
_AWAKEABLE_PREFIXES = ("sign_", "prom_")
#: raw invocation id (8-byte partition key + 16-byte uuid) + u32 signal/entry index.
_AWAKEABLE_RAW_LEN = 28
#: Signal indexes below this are built-in (1 = CANCEL); awakeables use 17 and up.
FIRST_AWAKEABLE_SIGNAL = 17


class IdError(ValueError):
    """A malformed id; the message is the reason (like restate-server's)."""


def check_invocation_id(value: str) -> None:
    """Raise :class:`IdError` unless ``value`` looks like ``inv_1<33 base62 chars>``."""
    if not value.startswith(_INVOCATION_PREFIX) or len(value) == len(_INVOCATION_PREFIX):
        raise IdError("bad format")
    rest = value[len(_INVOCATION_PREFIX) :]
    if rest[0] != "1":
        raise IdError("unrecognized codec version")
    payload = rest[1:]
    if len(payload) != _INVOCATION_PAYLOAD_LEN:
        raise IdError("bad length")
    if not set(payload) <= _BASE62:
        raise IdError("bad format")


def check_awakeable_id(value: str) -> None:
    """Raise :class:`IdError` unless ``value`` is ``sign_1…``/``prom_1…`` + base64url bytes."""
    prefix = next((p for p in _AWAKEABLE_PREFIXES if value.startswith(p)), None)
    if prefix is None or len(value) == len(prefix):
        raise IdError("bad format")
    rest = value[len(prefix) :]
    if rest[0] != "1":
        raise IdError("unrecognized codec version")
    encoded = rest[1:]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise IdError("id doesn't match the expected type") from exc
    if (
        len(raw) != _AWAKEABLE_RAW_LEN
        or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != encoded
    ):
        raise IdError("id doesn't match the expected type")


def awakeable_invocation(value: str) -> tuple[str, int]:
    """(invocation id, signal index) of a well-formed awakeable id.

    Raises :class:`IdError` when the id is malformed or names a built-in signal (index below
    :data:`FIRST_AWAKEABLE_SIGNAL`: completing signal 1 would cancel the invocation).
    restate-server accepts those; refusing them is deliberate.
    """
    check_awakeable_id(value)
    try:
        parsed = AwakeableId.parse(value)
    except ValueError as exc:  # pragma: no cover - check_awakeable_id already validated it
        raise IdError("id doesn't match the expected type") from exc
    if parsed.signal_index < FIRST_AWAKEABLE_SIGNAL:
        raise IdError(
            f"signal index {parsed.signal_index} is reserved for built-in signals "
            f"(awakeables use indexes from {FIRST_AWAKEABLE_SIGNAL})"
        )
    return str(parsed.invocation_id), parsed.signal_index
