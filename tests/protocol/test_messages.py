"""Every message type round-trips; type helpers; field numbers match Restate's schema."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from restate_lambda.protocol import (
    COMPLETIONS_OF,
    Message,
    MessageType,
    ProtocolError,
    allows_ack,
    decode_all,
    describe,
    encode,
    is_command,
    is_completable,
    is_control,
    is_custom,
    is_notification,
    message_class,
    message_type_of,
    parse,
    pb,
)


def _fill(msg: Any, depth: int = 0) -> Any:
    """Set every field (first member of each oneof) to a non-default value."""
    seen_oneofs: set[str] = set()
    for i, field in enumerate(msg.DESCRIPTOR.fields, start=1):
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                continue
            target = getattr(msg, field.name)
            if repeated:
                _fill(target.add(), depth + 1)
            else:
                target.SetInParent()
                _fill(target, depth + 1)
            continue
        if field.type == FieldDescriptor.TYPE_BYTES:
            value: Any = bytes([i]) * 3
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = f"{field.name}-{i}"
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = True
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = 1
        else:
            value = 1000 + i
        if repeated:
            getattr(msg, field.name).extend([value, value])
        else:
            setattr(msg, field.name, value)
    return msg


@pytest.mark.parametrize("t", list(MessageType), ids=lambda t: t.name)
def test_every_message_type_round_trips(t: MessageType) -> None:
    msg = _fill(message_class(t)())
    assert message_type_of(msg) is t
    for ack in (False, True):
        [frame] = decode_all(encode(msg, requested_ack=ack))
        assert frame.type == t
        assert frame.requested_ack is ack
        assert parse(frame.type, frame.payload) == msg


def test_type_code_values() -> None:
    assert MessageType.START.value == 0x0000
    assert MessageType.PROPOSE_RUN_COMPLETION.value == 0x0005
    assert MessageType.INPUT_COMMAND.value == 0x0400
    assert MessageType.SEND_SIGNAL_COMMAND.value == 0x0410
    assert MessageType.COMPLETE_AWAKEABLE_COMMAND.value == 0x0414
    assert MessageType.CALL_COMPLETION_NOTIFICATION.value == 0x800D
    assert MessageType.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION.value == 0x800E
    assert MessageType.GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION.value == 0x8013
    assert MessageType.SIGNAL_NOTIFICATION.value == 0xFBFF
    commands = [t for t in MessageType if is_command(t)]
    assert len(commands) == 20  # 0x0400-0x0414 without 0x040F


def test_namespace_helpers() -> None:
    assert is_control(MessageType.START) and not is_command(MessageType.START)
    assert is_command(MessageType.OUTPUT_COMMAND) and not is_notification(
        MessageType.OUTPUT_COMMAND
    )
    assert is_notification(MessageType.SIGNAL_NOTIFICATION)
    assert is_notification(MessageType.RUN_COMPLETION_NOTIFICATION)
    assert is_custom(0xFC00) and is_custom(0xFFFF) and not is_notification(0xFC00)
    assert allows_ack(MessageType.SET_STATE_COMMAND)
    assert allows_ack(MessageType.PROPOSE_RUN_COMPLETION)
    assert not allows_ack(MessageType.END)
    assert not allows_ack(MessageType.SLEEP_COMPLETION_NOTIFICATION)
    assert describe(0x040D) == "CALL_COMMAND(0x040D)"
    assert describe(0xFC02) == "CUSTOM(0xFC02)"


def test_completable_commands() -> None:
    completable = {t for t in MessageType if is_completable(t)}
    assert completable == {
        MessageType.GET_LAZY_STATE_COMMAND,
        MessageType.GET_LAZY_STATE_KEYS_COMMAND,
        MessageType.GET_PROMISE_COMMAND,
        MessageType.PEEK_PROMISE_COMMAND,
        MessageType.COMPLETE_PROMISE_COMMAND,
        MessageType.SLEEP_COMMAND,
        MessageType.CALL_COMMAND,
        MessageType.ONE_WAY_CALL_COMMAND,
        MessageType.RUN_COMMAND,
        MessageType.ATTACH_INVOCATION_COMMAND,
        MessageType.GET_INVOCATION_OUTPUT_COMMAND,
    }
    assert not is_completable(MessageType.SET_STATE_COMMAND)
    assert not is_completable(MessageType.GET_EAGER_STATE_COMMAND)
    assert COMPLETIONS_OF[MessageType.CALL_COMMAND] == (
        MessageType.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION,
        MessageType.CALL_COMPLETION_NOTIFICATION,
    )
    for notifications in COMPLETIONS_OF.values():
        assert all(is_notification(n) for n in notifications)


def test_errors() -> None:
    with pytest.raises(ProtocolError):
        message_class(0x0123)
    with pytest.raises(ProtocolError):
        parse(0xFC00, b"")
    with pytest.raises(ProtocolError):
        message_type_of(pb().Value())  # nested type, not a framed message
    assert Message.__name__ == "Message"


# (message, field) -> field number, as in Restate's protocol.proto (V5/V6 + V7 extras).
FIELD_NUMBERS: dict[tuple[str, str], int] = {
    ("StartMessage", "id"): 1,
    ("StartMessage", "debug_id"): 2,
    ("StartMessage", "known_entries"): 3,
    ("StartMessage", "state_map"): 4,
    ("StartMessage", "partial_state"): 5,
    ("StartMessage", "key"): 6,
    ("StartMessage", "retry_count_since_last_stored_entry"): 7,
    ("StartMessage", "duration_since_last_stored_entry"): 8,
    ("StartMessage", "random_seed"): 9,
    ("StartMessage", "scope"): 10,
    ("StartMessage", "limit_key"): 11,
    ("StartMessage", "idempotency_key"): 12,
    ("SuspensionMessage", "waiting_completions"): 1,
    ("SuspensionMessage", "waiting_signals"): 2,
    ("SuspensionMessage", "waiting_named_signals"): 3,
    ("SuspensionMessage", "awaiting_on"): 4,
    ("ErrorMessage", "code"): 1,
    ("ErrorMessage", "message"): 2,
    ("ErrorMessage", "stacktrace"): 3,
    ("ErrorMessage", "related_command_index"): 4,
    ("ErrorMessage", "related_command_name"): 5,
    ("ErrorMessage", "related_command_type"): 6,
    ("ErrorMessage", "next_retry_delay"): 8,
    ("ErrorMessage", "behavior"): 9,
    ("CommandAckMessage", "command_index"): 1,
    ("ProposeRunCompletionMessage", "result_completion_id"): 1,
    ("ProposeRunCompletionMessage", "value"): 14,
    ("ProposeRunCompletionMessage", "failure"): 15,
    ("InputCommandMessage", "headers"): 1,
    ("InputCommandMessage", "value"): 14,
    ("OutputCommandMessage", "value"): 14,
    ("OutputCommandMessage", "failure"): 15,
    ("SetStateCommandMessage", "value"): 3,
    ("GetEagerStateCommandMessage", "void"): 13,
    ("GetEagerStateCommandMessage", "value"): 14,
    ("GetEagerStateKeysCommandMessage", "value"): 14,
    ("CompletePromiseCommandMessage", "completion_value"): 2,
    ("CompletePromiseCommandMessage", "completion_failure"): 3,
    ("SleepCommandMessage", "wake_up_time"): 1,
    ("CallCommandMessage", "parameter"): 3,
    ("CallCommandMessage", "headers"): 4,
    ("CallCommandMessage", "key"): 5,
    ("CallCommandMessage", "idempotency_key"): 6,
    ("CallCommandMessage", "invocation_id_notification_idx"): 10,
    ("CallCommandMessage", "result_completion_id"): 11,
    ("OneWayCallCommandMessage", "invoke_time"): 4,
    ("OneWayCallCommandMessage", "headers"): 5,
    ("OneWayCallCommandMessage", "key"): 6,
    ("OneWayCallCommandMessage", "idempotency_key"): 7,
    ("OneWayCallCommandMessage", "invocation_id_notification_idx"): 10,
    ("SendSignalCommandMessage", "target_invocation_id"): 1,
    ("SendSignalCommandMessage", "idx"): 2,
    ("SendSignalCommandMessage", "name"): 3,
    ("SendSignalCommandMessage", "void"): 4,
    ("SendSignalCommandMessage", "entry_name"): 12,
    ("AttachInvocationCommandMessage", "invocation_id"): 1,
    ("AttachInvocationCommandMessage", "idempotent_request_target"): 3,
    ("AttachInvocationCommandMessage", "workflow_target"): 4,
    ("GetInvocationOutputCommandMessage", "workflow_target"): 4,
    ("CompleteAwakeableCommandMessage", "awakeable_id"): 1,
    ("CompleteAwakeableCommandMessage", "value"): 2,
    ("CompleteAwakeableCommandMessage", "failure"): 3,
    ("GetLazyStateKeysCompletionNotificationMessage", "state_keys"): 17,
    ("CallInvocationIdCompletionNotificationMessage", "invocation_id"): 16,
    ("SignalNotificationMessage", "idx"): 2,
    ("SignalNotificationMessage", "name"): 3,
    ("SignalNotificationMessage", "failure"): 6,
    ("Failure", "metadata"): 3,
    ("IdempotentRequestTarget", "service_key"): 2,
    ("IdempotentRequestTarget", "idempotency_key"): 4,
    ("WorkflowTarget", "workflow_key"): 2,
}


def test_field_numbers_match_restate() -> None:
    P = pb()
    for (message, field), number in FIELD_NUMBERS.items():
        assert getattr(P, message).DESCRIPTOR.fields_by_name[field].number == number, (
            message,
            field,
        )
    # every command carries its entry name in field 12
    for t in MessageType:
        if is_command(t):
            fields = message_class(t).DESCRIPTOR.fields_by_number
            assert 12 in fields, t.name
    # every completion notification carries completion_id = 1
    for t in MessageType:
        if is_notification(t) and t != MessageType.SIGNAL_NOTIFICATION:
            assert message_class(t).DESCRIPTOR.fields_by_number[1].name == "completion_id"


def test_notification_template_is_wire_superset() -> None:
    P = pb()
    n = P.CallCompletionNotificationMessage(completion_id=4, value=P.Value(content=b"r"))
    generic = P.NotificationTemplate.FromString(n.SerializeToString())
    assert generic.completion_id == 4 and generic.value.content == b"r"
    back = P.CallCompletionNotificationMessage.FromString(generic.SerializeToString())
    assert back == n
