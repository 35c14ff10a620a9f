"""Replay bookkeeping: the journal cursor, determinism checks, notification decoding, errors."""

from __future__ import annotations

from collections import deque
from typing import Any

from restate_lambda.awaitables import Failure, Result
from restate_lambda.errors import SdkInternalBaseException
from restate_lambda.protocol.errors import JOURNAL_MISMATCH, PROTOCOL_VIOLATION
from restate_lambda.protocol.framing import encode_raw
from restate_lambda.protocol.messages import MessageType, describe, parse, pb

T = MessageType


class VMError(SdkInternalBaseException):
    """The attempt must end with an ``ErrorMessage`` built from these fields.

    A BaseException (like every SDK-internal error) so that handler code catching
    ``Exception`` cannot swallow a journal mismatch.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        stacktrace: str = "",
        command_index: int | None = None,
        command_type: int | None = None,
        command_name: str | None = None,
        next_retry_delay_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.stacktrace = stacktrace
        self.command_index = command_index
        self.command_type = command_type
        self.command_name = command_name
        self.next_retry_delay_ms = next_retry_delay_ms

    def to_frame(self) -> bytes:
        """The framed ``ErrorMessage``."""
        msg = pb().ErrorMessage(code=self.code, message=self.message, stacktrace=self.stacktrace)
        if self.command_index is not None:
            msg.related_command_index = self.command_index
        if self.command_type is not None:
            msg.related_command_type = self.command_type
        if self.command_name:
            msg.related_command_name = self.command_name
        if self.next_retry_delay_ms is not None:
            msg.next_retry_delay = self.next_retry_delay_ms
        return encode_raw(T.ERROR, msg.SerializeToString())


def command_name(msg: Any) -> str:
    """The entry name of a command (``entry_name`` for SendSignal, ``name`` otherwise)."""
    return str(getattr(msg, "entry_name", None) or getattr(msg, "name", "") or "")


def _eq_full(actual: Any, expected: Any) -> bool:
    return bool(actual == expected)


def _eq_name(actual: Any, expected: Any) -> bool:
    return bool(actual.name == expected.name)


def _eq_always(actual: Any, expected: Any) -> bool:
    return True


def _eq_send(actual: Any, expected: Any) -> bool:
    expected.invoke_time = actual.invoke_time  # the delay is computed from the clock
    return bool(actual == expected)


def _eq_key(actual: Any, expected: Any) -> bool:
    return bool(actual.key == expected.key)


#: How a replayed command is compared with the one the handler produces now (default: equal).
#: Eager state reads compare the key only: their value is whatever the journal recorded.
COMPARATORS = {
    T.INPUT_COMMAND: _eq_always,
    T.SLEEP_COMMAND: _eq_name,
    T.ONE_WAY_CALL_COMMAND: _eq_send,
    T.GET_EAGER_STATE_COMMAND: _eq_key,
    T.GET_EAGER_STATE_KEYS_COMMAND: _eq_always,
}


def decode_notification(t: int, payload: bytes) -> tuple[int | str, Result]:
    """(notification id, result) of a notification frame; ids: completion id > 0,
    ``-index`` for signals by index, the name for named signals."""
    tmpl = pb().NotificationTemplate()
    try:
        tmpl.ParseFromString(payload)
    except Exception as e:
        raise VMError(PROTOCOL_VIOLATION, f"cannot decode {describe(t)}: {e}") from None
    which_id = tmpl.WhichOneof("id")
    nid: int | str
    if which_id == "signal_id":
        nid = -int(tmpl.signal_id)
    elif which_id == "signal_name":
        nid = str(tmpl.signal_name)
    else:
        nid = int(tmpl.completion_id)
    return nid, result_of(tmpl)


def result_of(msg: Any) -> Result:
    """The result carried by a notification-shaped message (or a template)."""
    which = msg.WhichOneof("result")
    if which == "value":
        return bytes(msg.value.content)
    if which == "failure":
        return failure_from_pb(msg.failure)
    if which == "invocation_id":
        return str(msg.invocation_id)
    if which == "state_keys":
        return [bytes(k).decode() for k in msg.state_keys.keys]
    return None


def failure_from_pb(f: Any) -> Failure:
    """A :class:`Failure` from a protobuf ``Failure``."""
    meta = {m.key: m.value for m in f.metadata} or None
    return Failure(int(f.code), str(f.message), meta)


def failure_to_pb(f: Failure, v6: bool) -> Any:
    """A protobuf ``Failure`` (metadata only from V6 on)."""
    out = pb().Failure(code=f.code, message=f.message)
    if v6 and f.metadata:
        for k, v in f.metadata.items():
            out.metadata.add(key=k, value=v)
    return out


class Journal:
    """The commands still to replay and the index of the current command."""

    def __init__(self) -> None:
        self.commands: deque[tuple[int, bytes]] = deque()
        self.index = -1
        self.current_type = int(T.START)
        self.current_name = ""

    def advance(self, t: int, name: str) -> None:
        """Move to the next command (of type ``t``)."""
        self.index += 1
        self.current_type = t
        self.current_name = name

    def pop(self, t: int, expected: Any, alt: tuple[int, Any] | None = None) -> tuple[int, Any]:
        """Pop the next replayed command, check it against ``expected`` of type ``t`` (or
        against ``alt``, a second acceptable (type, command), when the journal holds that type)
        and return (its type, the journaled command). VMError 570 when it differs."""
        actual_t, payload = self.commands.popleft()
        if actual_t != t and alt is not None and actual_t == alt[0]:
            t, expected = alt
        if actual_t != t:
            raise self.mismatch(actual_t, None, t, expected)
        actual = parse(t, payload)
        if not COMPARATORS.get(MessageType(t), _eq_full)(actual, expected):
            raise self.mismatch(actual_t, actual, t, expected)
        self.current_type = t
        return t, actual

    @property
    def done(self) -> bool:
        """True once every journaled command was replayed."""
        return not self.commands

    def mismatch(self, actual_t: int, actual: Any, t: int, expected: Any) -> VMError:
        """A journal-mismatch error for the current command."""
        actual_name = command_name(actual) if actual is not None else ""
        exp_name = command_name(expected)
        detail = (
            "" if actual is None else f"\n journal: {_short(actual)}\n now:     {_short(expected)}"
        )
        return VMError(
            JOURNAL_MISMATCH,
            f"Journal mismatch at command index {self.index}: the journal has "
            f"{describe(actual_t)} {actual_name!r}, the handler now produced "
            f"{describe(t)} {exp_name!r}. The handler code is not deterministic or was changed "
            f"while invocations were in flight.{detail}",
            command_index=self.index,
            command_type=actual_t,
            command_name=actual_name or exp_name,
        )


def _short(msg: Any) -> str:
    text = str(msg).replace("\n", " ").strip()
    return text if len(text) < 300 else text[:297] + "..."
