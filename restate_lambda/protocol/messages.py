"""Message type codes of the service protocol and their protobuf classes.

The protobuf module is imported lazily (first call of :func:`pb`, :func:`parse`,
:func:`message_class` …) so that importing this module stays cheap.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache
from types import ModuleType

from restate_lambda.protocol.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Any protobuf message of the service protocol (at runtime: loaded lazily, see __getattr__).
    from google.protobuf.message import Message as Message


class MessageType(IntEnum):
    """The u16 type code carried in every frame header."""

    # Control messages (0x0000-0x03FF)
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006  # V7
    PROPOSE_RUN_COMPLETION_ACK = 0x0007  # V7

    # Commands (0x0400-0x7FFF)
    INPUT_COMMAND = 0x0400
    OUTPUT_COMMAND = 0x0401
    GET_LAZY_STATE_COMMAND = 0x0402
    SET_STATE_COMMAND = 0x0403
    CLEAR_STATE_COMMAND = 0x0404
    CLEAR_ALL_STATE_COMMAND = 0x0405
    GET_LAZY_STATE_KEYS_COMMAND = 0x0406
    GET_EAGER_STATE_COMMAND = 0x0407
    GET_EAGER_STATE_KEYS_COMMAND = 0x0408
    GET_PROMISE_COMMAND = 0x0409
    PEEK_PROMISE_COMMAND = 0x040A
    COMPLETE_PROMISE_COMMAND = 0x040B
    SLEEP_COMMAND = 0x040C
    CALL_COMMAND = 0x040D
    ONE_WAY_CALL_COMMAND = 0x040E
    SEND_SIGNAL_COMMAND = 0x0410
    RUN_COMMAND = 0x0411
    ATTACH_INVOCATION_COMMAND = 0x0412
    GET_INVOCATION_OUTPUT_COMMAND = 0x0413
    COMPLETE_AWAKEABLE_COMMAND = 0x0414

    # Notifications (0x8000-0xFBFF)
    GET_LAZY_STATE_COMPLETION_NOTIFICATION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION_NOTIFICATION = 0x8006
    GET_PROMISE_COMPLETION_NOTIFICATION = 0x8009
    PEEK_PROMISE_COMPLETION_NOTIFICATION = 0x800A
    COMPLETE_PROMISE_COMPLETION_NOTIFICATION = 0x800B
    SLEEP_COMPLETION_NOTIFICATION = 0x800C
    CALL_COMPLETION_NOTIFICATION = 0x800D
    CALL_INVOCATION_ID_COMPLETION_NOTIFICATION = 0x800E
    RUN_COMPLETION_NOTIFICATION = 0x8011
    ATTACH_INVOCATION_COMPLETION_NOTIFICATION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION = 0x8013
    SIGNAL_NOTIFICATION = 0xFBFF


#: Lowest / highest code of each namespace.
COMMAND_RANGE = (0x0400, 0x7FFF)
NOTIFICATION_RANGE = (0x8000, 0xFBFF)
CUSTOM_RANGE = (0xFC00, 0xFFFF)

_T = MessageType

#: MessageType -> name of the generated protobuf class.
PB_CLASS_NAMES: dict[MessageType, str] = {
    _T.START: "StartMessage",
    _T.SUSPENSION: "SuspensionMessage",
    _T.ERROR: "ErrorMessage",
    _T.END: "EndMessage",
    _T.COMMAND_ACK: "CommandAckMessage",
    _T.PROPOSE_RUN_COMPLETION: "ProposeRunCompletionMessage",
    _T.AWAITING_ON: "AwaitingOnMessage",
    _T.PROPOSE_RUN_COMPLETION_ACK: "ProposeRunCompletionAckMessage",
    _T.INPUT_COMMAND: "InputCommandMessage",
    _T.OUTPUT_COMMAND: "OutputCommandMessage",
    _T.GET_LAZY_STATE_COMMAND: "GetLazyStateCommandMessage",
    _T.SET_STATE_COMMAND: "SetStateCommandMessage",
    _T.CLEAR_STATE_COMMAND: "ClearStateCommandMessage",
    _T.CLEAR_ALL_STATE_COMMAND: "ClearAllStateCommandMessage",
    _T.GET_LAZY_STATE_KEYS_COMMAND: "GetLazyStateKeysCommandMessage",
    _T.GET_EAGER_STATE_COMMAND: "GetEagerStateCommandMessage",
    _T.GET_EAGER_STATE_KEYS_COMMAND: "GetEagerStateKeysCommandMessage",
    _T.GET_PROMISE_COMMAND: "GetPromiseCommandMessage",
    _T.PEEK_PROMISE_COMMAND: "PeekPromiseCommandMessage",
    _T.COMPLETE_PROMISE_COMMAND: "CompletePromiseCommandMessage",
    _T.SLEEP_COMMAND: "SleepCommandMessage",
    _T.CALL_COMMAND: "CallCommandMessage",
    _T.ONE_WAY_CALL_COMMAND: "OneWayCallCommandMessage",
    _T.SEND_SIGNAL_COMMAND: "SendSignalCommandMessage",
    _T.RUN_COMMAND: "RunCommandMessage",
    _T.ATTACH_INVOCATION_COMMAND: "AttachInvocationCommandMessage",
    _T.GET_INVOCATION_OUTPUT_COMMAND: "GetInvocationOutputCommandMessage",
    _T.COMPLETE_AWAKEABLE_COMMAND: "CompleteAwakeableCommandMessage",
    _T.GET_LAZY_STATE_COMPLETION_NOTIFICATION: "GetLazyStateCompletionNotificationMessage",
    _T.GET_LAZY_STATE_KEYS_COMPLETION_NOTIFICATION: (
        "GetLazyStateKeysCompletionNotificationMessage"
    ),
    _T.GET_PROMISE_COMPLETION_NOTIFICATION: "GetPromiseCompletionNotificationMessage",
    _T.PEEK_PROMISE_COMPLETION_NOTIFICATION: "PeekPromiseCompletionNotificationMessage",
    _T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION: "CompletePromiseCompletionNotificationMessage",
    _T.SLEEP_COMPLETION_NOTIFICATION: "SleepCompletionNotificationMessage",
    _T.CALL_COMPLETION_NOTIFICATION: "CallCompletionNotificationMessage",
    _T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION: (
        "CallInvocationIdCompletionNotificationMessage"
    ),
    _T.RUN_COMPLETION_NOTIFICATION: "RunCompletionNotificationMessage",
    _T.ATTACH_INVOCATION_COMPLETION_NOTIFICATION: ("AttachInvocationCompletionNotificationMessage"),
    _T.GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION: (
        "GetInvocationOutputCompletionNotificationMessage"
    ),
    _T.SIGNAL_NOTIFICATION: "SignalNotificationMessage",
}

#: Protobuf package of the generated classes (see service_protocol.proto).
PB_PACKAGE = "restate_lambda.protocol"

_TYPE_BY_FULL_NAME: dict[str, MessageType] = {
    f"{PB_PACKAGE}.{name}": t for t, name in PB_CLASS_NAMES.items()
}

#: For each completable command, the notification types that complete it (in the order sent).
COMPLETIONS_OF: dict[MessageType, tuple[MessageType, ...]] = {
    _T.GET_LAZY_STATE_COMMAND: (_T.GET_LAZY_STATE_COMPLETION_NOTIFICATION,),
    _T.GET_LAZY_STATE_KEYS_COMMAND: (_T.GET_LAZY_STATE_KEYS_COMPLETION_NOTIFICATION,),
    _T.GET_PROMISE_COMMAND: (_T.GET_PROMISE_COMPLETION_NOTIFICATION,),
    _T.PEEK_PROMISE_COMMAND: (_T.PEEK_PROMISE_COMPLETION_NOTIFICATION,),
    _T.COMPLETE_PROMISE_COMMAND: (_T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION,),
    _T.SLEEP_COMMAND: (_T.SLEEP_COMPLETION_NOTIFICATION,),
    _T.CALL_COMMAND: (
        _T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION,
        _T.CALL_COMPLETION_NOTIFICATION,
    ),
    _T.ONE_WAY_CALL_COMMAND: (_T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION,),
    _T.RUN_COMMAND: (_T.RUN_COMPLETION_NOTIFICATION,),
    _T.ATTACH_INVOCATION_COMMAND: (_T.ATTACH_INVOCATION_COMPLETION_NOTIFICATION,),
    _T.GET_INVOCATION_OUTPUT_COMMAND: (_T.GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION,),
}


def is_command(t: int) -> bool:
    """True for codes in the command namespace (0x0400-0x7FFF)."""
    return COMMAND_RANGE[0] <= t <= COMMAND_RANGE[1]


def is_notification(t: int) -> bool:
    """True for codes in the notification namespace (0x8000-0xFBFF)."""
    return NOTIFICATION_RANGE[0] <= t <= NOTIFICATION_RANGE[1]


def is_custom(t: int) -> bool:
    """True for custom entries (0xFC00-0xFFFF), journaled opaquely and replayed in order."""
    return CUSTOM_RANGE[0] <= t <= CUSTOM_RANGE[1]


def is_control(t: int) -> bool:
    """True for control messages (0x0000-0x03FF): Start, Suspension, Error, End, …"""
    return 0 <= t < COMMAND_RANGE[0]


def is_completable(t: int) -> bool:
    """True for commands answered by at least one completion notification."""
    return t in COMPLETIONS_OF


def allows_ack(t: int) -> bool:
    """True for types that may carry the REQUESTED_ACK flag (commands, run proposals, custom)."""
    return is_command(t) or is_custom(t) or t == MessageType.PROPOSE_RUN_COMPLETION


def is_known(t: int) -> bool:
    """True if ``t`` is one of the :class:`MessageType` codes."""
    return t in _KNOWN_CODES


_KNOWN_CODES = frozenset(int(t) for t in MessageType)


def describe(t: int) -> str:
    """Human-readable name of a type code (e.g. ``CALL_COMMAND(0x040D)``)."""
    name = MessageType(t).name if t in _KNOWN_CODES else "UNKNOWN"
    if name == "UNKNOWN" and is_custom(t):
        name = "CUSTOM"
    return f"{name}(0x{t:04X})"


@cache
def pb() -> ModuleType:
    """The generated protobuf module (imported on first use)."""
    from restate_lambda.protocol.generated import service_protocol_pb2

    return service_protocol_pb2


#: Classes looked up so far by type code: every message of every journal goes through
#: :func:`message_class`, so the enum lookup and the module attribute are done once per type.
_CLASSES: dict[int, type[Message]] = {}


def message_class(t: int) -> type[Message]:
    """The protobuf class for a message type code; ProtocolError if unknown."""
    cls = _CLASSES.get(t)
    if cls is None:
        try:
            name = PB_CLASS_NAMES[MessageType(t)]
        except ValueError:
            raise ProtocolError(f"unknown message type 0x{t:04X}") from None
        cls = _CLASSES[t] = getattr(pb(), name)
    return cls


def parse(t: int, payload: bytes | bytearray | memoryview) -> Message:
    """Decode ``payload`` as the protobuf message of type ``t``.

    Raises :class:`ProtocolError` (571) for unknown/custom types or undecodable payloads.
    """
    msg = message_class(t)()
    try:
        msg.ParseFromString(payload if type(payload) is bytes else bytes(payload))
    except Exception as e:
        from google.protobuf.message import DecodeError

        if not isinstance(e, DecodeError):
            raise
        raise ProtocolError(f"cannot decode {describe(t)}: {e}") from e
    return msg


def message_type_of(msg: Message) -> MessageType:
    """The type code of a protobuf message instance of this protocol."""
    try:
        return _TYPE_BY_FULL_NAME[type(msg).DESCRIPTOR.full_name]
    except (KeyError, AttributeError):
        raise ProtocolError(
            f"{type(msg).__name__} is not a framed service-protocol message"
        ) from None


def __getattr__(name: str) -> object:
    """Provide ``Message`` (the protobuf base class) without importing protobuf eagerly."""
    if name == "Message":
        from google.protobuf.message import Message as Message

        return Message
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
