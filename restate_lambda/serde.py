"""Serializers: JSON by default, msgspec Structs / dataclasses / TypedDicts, pydantic models.

msgspec and pydantic are imported only when a handler's types need them.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_PRIMITIVES = (str, int, float, bool, dict, list, type(None))


class Serde(Generic[T]):
    """Turns values into bytes and back."""

    def deserialize(self, buf: bytes) -> T | None:
        """Bytes to a value (``None`` for empty input)."""
        raise NotImplementedError

    def serialize(self, obj: T | None) -> bytes:
        """A value to bytes (empty for ``None``)."""
        raise NotImplementedError


class BytesSerde(Serde[bytes]):
    """Pass-through."""

    def deserialize(self, buf: bytes) -> bytes | None:
        """The bytes themselves."""
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        """The bytes themselves (empty for ``None``)."""
        return b"" if obj is None else bytes(obj)


class JsonSerde(Serde[T]):
    """Plain JSON with the standard library."""

    def deserialize(self, buf: bytes) -> T | None:
        """``json.loads`` (``None`` for empty input)."""
        return json.loads(buf) if buf else None

    def serialize(self, obj: T | None) -> bytes:
        """``json.dumps`` (empty for ``None``)."""
        return b"" if obj is None else json.dumps(obj).encode()


def is_pydantic(tp: Any) -> bool:
    """True for pydantic model classes (without importing pydantic)."""
    return isinstance(tp, type) and any(
        c.__module__.startswith("pydantic") and c.__name__ == "BaseModel" for c in tp.__mro__
    )


def is_msgspec_struct(tp: Any) -> bool:
    """True for msgspec Struct classes (without importing msgspec)."""
    return isinstance(tp, type) and any(
        c.__module__.startswith("msgspec") and c.__name__ == "Struct" for c in tp.__mro__
    )


def _needs_msgspec(tp: Any) -> bool:
    if tp is None or tp in _PRIMITIVES or tp is Any:
        return False
    if is_pydantic(tp):
        return False
    return not (isinstance(tp, type) and issubclass(tp, _PRIMITIVES))


class DefaultSerde(Serde[T]):
    """JSON, typed by ``type_hint`` when given (msgspec for structured types, pydantic models)."""

    def __init__(self, type_hint: Any = None) -> None:
        self.type_hint = type_hint
        self._typed = _needs_msgspec(type_hint)
        self._pydantic = is_pydantic(type_hint)

    def with_maybe_type(self, type_hint: Any = None) -> DefaultSerde[Any]:
        """A copy typed by ``type_hint``."""
        return DefaultSerde(type_hint)

    def deserialize(self, buf: bytes) -> T | None:
        """Decode JSON into ``type_hint``."""
        if not buf:
            return None
        if self._pydantic:
            return self.type_hint.model_validate_json(buf)  # type: ignore[no-any-return]
        if self._typed:
            import msgspec

            return msgspec.json.decode(buf, type=self.type_hint)  # type: ignore[no-any-return]
        return json.loads(buf)  # type: ignore[no-any-return]

    def serialize(self, obj: T | None) -> bytes:
        """Encode ``obj`` as JSON."""
        if obj is None:
            return b""
        if hasattr(obj, "model_dump_json"):
            return obj.model_dump_json().encode()  # type: ignore[no-any-return]
        if isinstance(obj, _PRIMITIVES) and not self._typed:
            try:
                return json.dumps(obj).encode()
            except TypeError:
                pass
        import msgspec

        return msgspec.json.encode(obj)


class MsgspecJsonSerde(DefaultSerde[T]):
    """JSON through msgspec for ``model``."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._typed = True


class PydanticJsonSerde(DefaultSerde[T]):
    """JSON through pydantic for ``model``."""


def json_schema(tp: Any) -> Any:
    """A JSON schema for ``tp`` (``None`` when unknown)."""
    if tp is None:
        return None
    if is_pydantic(tp):
        return tp.model_json_schema(mode="serialization")
    simple = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        dict: "object",
        list: "array",
    }
    if tp in simple:
        return {"type": simple[tp]}
    try:
        import msgspec

        return msgspec.json.schema(tp)
    except Exception:
        return None
