"""Helpers shared by the backends: batch validation and sort-key prefix ranges.

Every backend validates a batch the same way *before* touching storage, so the conformance suite
sees identical ``ValueError`` / ``ValueTooLargeError`` behaviour everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.api import Check, Delete, Put, ValueTooLargeError, WriteOp

#: Largest Unicode scalar value; strings are ordered by code point, which for valid scalar
#: values is the same order as their UTF-8 bytes.
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def check_key(pk: str, sk: str) -> None:
    """Raise ``ValueError`` unless ``pk`` and ``sk`` are strings encodable as UTF-8."""
    for name, key in (("pk", pk), ("sk", sk)):
        if not isinstance(key, str):
            raise ValueError(f"{name} must be a str, got {type(key).__name__}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{name} {key!r} is not valid UTF-8 (lone surrogate?)") from e


def check_query(pk: str, prefix: str, after: str | None, limit: int | None) -> None:
    """Validate the arguments of ``Backend.query`` (every backend checks them alike)."""
    check_key(pk, prefix)
    if after is not None:
        check_key(pk, after)
    check_limit(limit)


def validate_batch(ops: Sequence[WriteOp], *, max_ops: int, max_value_bytes: int) -> None:
    """Check a batch against the contract's shape rules without looking at storage.

    Raises:
        ValueError: empty, more than ``max_ops`` operations, an item named twice, an unknown
            operation type, a negative ``expect`` or a non-string key.
        ValueTooLargeError: a ``Put`` value longer than ``max_value_bytes``.
    """
    if not ops:
        raise ValueError("a write batch needs at least one operation")
    if len(ops) > max_ops:
        raise ValueError(f"a write batch holds at most {max_ops} operations, got {len(ops)}")
    seen: set[tuple[str, str]] = set()
    for i, op in enumerate(ops):
        if not isinstance(op, Put | Delete | Check):
            raise ValueError(f"operation {i} is not a Put, Delete or Check: {op!r}")
        check_key(op.pk, op.sk)
        key = (op.pk, op.sk)
        if key in seen:
            raise ValueError(f"operation {i} names item {key!r} a second time in one batch")
        seen.add(key)
        if op.expect is not None and (not isinstance(op.expect, int) or op.expect < 0):
            raise ValueError(f"operation {i}: expect must be None or an int >= 0")
        if isinstance(op, Put):
            if not isinstance(op.value, bytes | bytearray | memoryview):
                raise ValueError(f"operation {i}: value must be bytes")
            if len(op.value) > max_value_bytes:
                raise ValueTooLargeError(
                    f"operation {i}: value of {len(op.value)} bytes exceeds the backend's "
                    f"limit of {max_value_bytes} bytes"
                )
            if op.due_ms is not None and not isinstance(op.due_ms, int):
                raise ValueError(f"operation {i}: due_ms must be None or an int")


def check_limit(limit: int | None) -> None:
    """Raise ``ValueError`` for a negative ``limit``."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    ``None`` when there is none (empty prefix, or every character is U+10FFFF). Used to turn a
    prefix match into the index-friendly range ``prefix <= key < upper``.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CHAR:
            nxt = last + 1
            if nxt in _SURROGATES:
                nxt = _SURROGATES.stop
            chars.append(chr(nxt))
            return "".join(chars)
    return None
