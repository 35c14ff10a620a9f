"""Turn the messages of one attempt into journal entries, state changes and effects.

This is pure: no I/O, no clock reads. The engine commits what it returns in one atomic batch
(journal segment + state + timers + outbox + invocation record) and then applies the effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from invoker import records as rec
from invoker import tracing
from invoker.ids import child_invocation_id, idempotent_invocation_id
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import parse, pb

#: Entries are stored as (message type, exact payload bytes).
Entry = tuple[int, bytes]


class ProtocolViolation(Exception):
    """The deployment broke the protocol; the attempt fails (code 571)."""


@dataclass(slots=True)
class AttemptError:
    """An ``ErrorMessage`` sent by the deployment (the attempt failed, retryable)."""

    code: int
    message: str
    stacktrace: str = ""
    next_retry_delay_ms: int | None = None
    related_command: str | None = None


@dataclass(slots=True)
class Processed:
    """Everything one attempt produced."""

    entries: list[Entry] = field(default_factory=list)
    new_commands: int = 0
    state: dict[str, bytes] | None = None
    state_changed: bool = False
    effects: list[rec.Effect] = field(default_factory=list)
    timers: list[tuple[int, int]] = field(default_factory=list)  # (completion id, wake-up ms)
    output: rec.Result | None = None
    ended: bool = False
    suspension: tuple[list[int], list[int], list[str]] | None = None
    error: AttemptError | None = None
    resolved_completions: set[int] = field(default_factory=set)


def _failure(pb_failure: object) -> rec.Failure:
    code = int(getattr(pb_failure, "code", 500)) or 500
    message = str(getattr(pb_failure, "message", ""))
    meta = {m.key: m.value for m in getattr(pb_failure, "metadata", [])}
    return rec.Failure(code=code, message=message, metadata=meta)


def _notification(kind: int, completion_id: int, **result: object) -> Entry:
    """Encode a completion notification; every notification shares NotificationTemplate fields."""
    tmpl = pb().NotificationTemplate(completion_id=completion_id)
    if "void" in result:
        tmpl.void.SetInParent()
    elif "value" in result:
        tmpl.value.content = result["value"]
    elif "failure" in result:
        f = result["failure"]
        assert isinstance(f, rec.Failure)
        tmpl.failure.code = f.code
        tmpl.failure.message = f.message
        for k, v in f.metadata.items():
            tmpl.failure.metadata.add(key=k, value=v)
    elif "invocation_id" in result:
        tmpl.invocation_id = result["invocation_id"]
    elif "state_keys" in result:
        keys = result["state_keys"]
        assert isinstance(keys, list)
        tmpl.state_keys.keys.extend(keys)
    return int(kind), tmpl.SerializeToString()


def notification_entry(kind: int, completion_id: int, result: rec.Result | None) -> Entry:
    """A completion notification carrying a value, a failure, or void (``result`` None)."""
    if result is None:
        return _notification(kind, completion_id, void=True)
    if result.failure is not None:
        return _notification(kind, completion_id, failure=result.failure)
    return _notification(kind, completion_id, value=result.value or b"")


def signal_entry(idx: int | None, name: str | None, result: rec.Result | None) -> Entry:
    """A signal notification (awakeable completion, cancel, named signal)."""
    msg = pb().SignalNotificationMessage()
    if name is not None:
        msg.name = name
    else:
        msg.idx = idx or 0
    if result is None:
        msg.void.SetInParent()
    elif result.failure is not None:
        msg.failure.code = result.failure.code
        msg.failure.message = result.failure.message
        for k, v in result.failure.metadata.items():
            msg.failure.metadata.add(key=k, value=v)
    else:
        msg.value.content = result.value or b""
    return int(T.SIGNAL_NOTIFICATION), msg.SerializeToString()


def notification_ids(entry: Entry) -> tuple[int | None, int | None, str | None]:
    """(completion id, signal index, signal name) of a notification entry."""
    tmpl = pb().NotificationTemplate()
    tmpl.ParseFromString(entry[1])
    which = tmpl.WhichOneof("id")
    if which == "completion_id":
        return tmpl.completion_id, None, None
    if which == "signal_id":
        return None, tmpl.signal_id, None
    if which == "signal_name":
        return None, None, tmpl.signal_name
    return None, None, None


@dataclass(slots=True)
class AttemptInput:
    """What processing needs to know about the invocation."""

    invocation_id: str
    service: str
    handler: str
    key: str | None
    service_kind: str
    can_write_state: bool
    journal_len: int
    commands_len: int
    state: dict[str, bytes]
    now_ms: int


def process(frames: list[tuple[int, bytes]], inp: AttemptInput, *, final: bool = True) -> Processed:
    """Apply the deployment's messages, in order, to a copy of the invocation's view.

    ``final``: the messages end the attempt (End, Suspension or Error last); otherwise they are
    a checkpoint in its middle: commands and run completions only.

    Raises:
        ProtocolViolation: a message is malformed or not allowed.
    """
    out = Processed(state=dict(inp.state))
    state = out.state
    assert state is not None
    journal_index = inp.journal_len
    command_index = inp.commands_len
    terminal_seen = False
    declared: set[int] = set()  # completion ids the attempt's commands declared

    def add(entry: Entry) -> None:
        nonlocal journal_index
        out.entries.append(entry)
        journal_index += 1

    for ty, payload in frames:
        if terminal_seen:
            raise ProtocolViolation(f"message 0x{ty:04x} after the attempt's terminal message")
        try:
            msg = parse(ty, payload)
        except (DecodeError, ProtocolError, ValueError, KeyError) as exc:
            raise ProtocolViolation(f"cannot decode message 0x{ty:04x}: {exc}") from exc
        if 0x0400 <= ty <= 0x7FFF or ty >= 0xFC00:
            if ty == T.INPUT_COMMAND:
                raise ProtocolViolation("the deployment sent an InputCommand")
            add((ty, payload))
            this_command = command_index
            command_index += 1
            out.new_commands += 1
            _declare(msg, declared)
            _apply_command(ty, msg, this_command, journal_index - 1, inp, out, state, add)
        elif ty == T.PROPOSE_RUN_COMPLETION:
            cid = msg.result_completion_id  # type: ignore[attr-defined]
            if cid in out.resolved_completions:
                raise ProtocolViolation(f"a second result for run completion {cid}")
            which = msg.WhichOneof("result")
            if which == "value":
                result = rec.Result(value=msg.value)  # type: ignore[attr-defined]
            elif which == "failure":
                result = rec.Result(failure=_failure(msg.failure))  # type: ignore[attr-defined]
            else:
                raise ProtocolViolation("ProposeRunCompletion without a result")
            add(notification_entry(T.RUN_COMPLETION_NOTIFICATION, cid, result))
            out.resolved_completions.add(cid)
        elif ty == T.SUSPENSION:
            out.suspension = (
                list(msg.waiting_completions),  # type: ignore[attr-defined]
                list(msg.waiting_signals),  # type: ignore[attr-defined]
                list(msg.waiting_named_signals),  # type: ignore[attr-defined]
            )
            terminal_seen = True
        elif ty == T.END:
            out.ended = True
            terminal_seen = True
        elif ty == T.ERROR:
            related = None
            if msg.HasField("related_command_type") or msg.HasField("related_command_name"):
                related = (
                    f"{msg.related_command_name or '?'} (index "  # type: ignore[attr-defined]
                    f"{msg.related_command_index}, type "  # type: ignore[attr-defined]
                    f"0x{msg.related_command_type:04x})"  # type: ignore[attr-defined]
                )
            out.error = AttemptError(
                code=int(msg.code) or 500,  # type: ignore[attr-defined]
                message=str(msg.message),  # type: ignore[attr-defined]
                stacktrace=str(msg.stacktrace),  # type: ignore[attr-defined]
                next_retry_delay_ms=(
                    int(msg.next_retry_delay)  # type: ignore[attr-defined]
                    if msg.HasField("next_retry_delay")
                    else None
                ),
                related_command=related,
            )
            terminal_seen = True
        elif ty in (T.AWAITING_ON, T.COMMAND_ACK):
            continue
        else:
            raise ProtocolViolation(f"unexpected message 0x{ty:04x} from the deployment")
    if not final:
        if terminal_seen:
            raise ProtocolViolation("a checkpoint holds End, Suspension or Error")
        return out
    if not terminal_seen:
        raise ProtocolViolation("the attempt ended without End, Suspension or Error")
    if out.ended and out.output is None:
        raise ProtocolViolation("End without an OutputCommand")
    return out


def _declare(msg: object, declared: set[int]) -> None:
    """Record the completion ids a command declares; a reused one breaks the protocol (its
    results would overwrite each other, and the commit would repeat the conflict forever)."""
    fields = msg.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]
    for field_name in ("result_completion_id", "invocation_id_notification_idx"):
        if field_name not in fields:
            continue
        cid = int(getattr(msg, field_name))
        if cid == 0:
            continue  # not set
        if cid in declared:
            raise ProtocolViolation(f"completion id {cid} declared twice in one attempt")
        declared.add(cid)


def _apply_command(
    ty: int,
    msg: object,
    command_index: int,
    journal_index: int,
    inp: AttemptInput,
    out: Processed,
    state: dict[str, bytes],
    add: object,
) -> None:
    add_entry = add
    assert callable(add_entry)
    m = msg
    if ty == T.OUTPUT_COMMAND:
        which = m.WhichOneof("result")  # type: ignore[attr-defined]
        if which == "failure":
            out.output = rec.Result(failure=_failure(m.failure))  # type: ignore[attr-defined]
        else:
            out.output = rec.Result(value=m.value.content if which == "value" else b"")  # type: ignore[attr-defined]
    elif ty in (T.SET_STATE_COMMAND, T.CLEAR_STATE_COMMAND, T.CLEAR_ALL_STATE_COMMAND):
        if not inp.can_write_state:
            raise ProtocolViolation(
                f"{T(ty).name} from a handler that may not write state "
                f"({inp.service}/{inp.handler})"
            )
        if ty == T.SET_STATE_COMMAND:
            state[_state_key(m.key)] = bytes(m.value.content)  # type: ignore[attr-defined]
        elif ty == T.CLEAR_STATE_COMMAND:
            state.pop(_state_key(m.key), None)  # type: ignore[attr-defined]
        else:
            state.clear()
        out.state_changed = True
    elif ty == T.GET_LAZY_STATE_COMMAND:
        cid = m.result_completion_id  # type: ignore[attr-defined]
        key = _state_key(m.key)  # type: ignore[attr-defined]
        value = state.get(key)
        res = rec.Result(value=value) if value is not None else None
        add_entry(notification_entry(T.GET_LAZY_STATE_COMPLETION_NOTIFICATION, cid, res))
        out.resolved_completions.add(cid)
    elif ty == T.GET_LAZY_STATE_KEYS_COMMAND:
        cid = m.result_completion_id  # type: ignore[attr-defined]
        keys = [k.encode() for k in sorted(state)]
        add_entry(
            _notification(T.GET_LAZY_STATE_KEYS_COMPLETION_NOTIFICATION, cid, state_keys=keys)
        )
        out.resolved_completions.add(cid)
    elif ty == T.SLEEP_COMMAND:
        out.timers.append((m.result_completion_id, int(m.wake_up_time)))  # type: ignore[attr-defined]
    elif ty in (T.CALL_COMMAND, T.ONE_WAY_CALL_COMMAND):
        _call(ty, m, command_index, inp, out, add_entry)
    elif ty == T.SEND_SIGNAL_COMMAND:
        which = m.WhichOneof("signal_id")  # type: ignore[attr-defined]
        spec = rec.SignalSpec(
            target=m.target_invocation_id,  # type: ignore[attr-defined]
            idx=m.idx if which == "idx" else None,  # type: ignore[attr-defined]
            name=m.name if which == "name" else None,  # type: ignore[attr-defined]
            value=m.value.content if m.WhichOneof("result") == "value" else None,  # type: ignore[attr-defined]
            failure=_failure(m.failure) if m.WhichOneof("result") == "failure" else None,  # type: ignore[attr-defined]
        )
        out.effects.append(rec.Effect("signal", rec.encode(spec)))
    elif ty == T.COMPLETE_AWAKEABLE_COMMAND:
        which = m.WhichOneof("result")  # type: ignore[attr-defined]
        awk = rec.SignalSpec(
            target=m.awakeable_id,  # type: ignore[attr-defined]  # decoded by the engine
            idx=None,
            name=None,
            value=m.value.content if which == "value" else None,  # type: ignore[attr-defined]
            failure=_failure(m.failure) if which == "failure" else None,  # type: ignore[attr-defined]
        )
        out.effects.append(rec.Effect("awakeable", rec.encode(awk)))
    elif ty in (T.GET_PROMISE_COMMAND, T.PEEK_PROMISE_COMMAND, T.COMPLETE_PROMISE_COMMAND):
        if inp.service_kind != "workflow" or inp.key is None:
            raise ProtocolViolation("promises are only available to workflows")
        op = {
            T.GET_PROMISE_COMMAND: "get",
            T.PEEK_PROMISE_COMMAND: "peek",
            T.COMPLETE_PROMISE_COMMAND: "complete",
        }[T(ty)]
        value = failure = None
        if op == "complete":
            which = m.WhichOneof("completion")  # type: ignore[attr-defined]
            if which == "completion_value":
                value = m.completion_value.content  # type: ignore[attr-defined]
            elif which == "completion_failure":
                failure = _failure(m.completion_failure)  # type: ignore[attr-defined]
            else:
                raise ProtocolViolation("CompletePromise without a completion")
        pop = rec.PromiseOp(
            op=op,
            service=inp.service,
            key=inp.key,
            name=m.key,  # type: ignore[attr-defined]
            invocation_id=inp.invocation_id,
            completion_id=m.result_completion_id,  # type: ignore[attr-defined]
            value=value,
            failure=failure,
        )
        out.effects.append(rec.Effect("promise", rec.encode(pop)))
    elif ty in (T.ATTACH_INVOCATION_COMMAND, T.GET_INVOCATION_OUTPUT_COMMAND):
        target = _target_id(m)
        aop = rec.AttachOp(
            op="attach" if ty == T.ATTACH_INVOCATION_COMMAND else "output",
            target=target,
            invocation_id=inp.invocation_id,
            completion_id=m.result_completion_id,  # type: ignore[attr-defined]
        )
        out.effects.append(rec.Effect("attach", rec.encode(aop)))
    # Run, GetEagerState(Keys) and custom commands need nothing beyond the journal.


def _state_key(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")


def state_key_bytes(key: str) -> bytes:
    """Inverse of the state key decoding."""
    return key.encode("utf-8", errors="surrogateescape")


def _target_id(m: object) -> str:
    which = m.WhichOneof("target")  # type: ignore[attr-defined]
    if which == "invocation_id":
        return str(m.invocation_id)  # type: ignore[attr-defined]
    if which == "idempotent_request_target":
        t = m.idempotent_request_target  # type: ignore[attr-defined]
        key = t.service_key if t.HasField("service_key") else None
        return idempotent_invocation_id(t.service_name, t.handler_name, key, t.idempotency_key)
    if which == "workflow_target":
        t = m.workflow_target  # type: ignore[attr-defined]
        from invoker.ids import workflow_invocation_id

        return workflow_invocation_id(t.workflow_name, t.workflow_key)
    raise ProtocolViolation("attach/get-output without a target")


def _call(
    ty: int, m: object, command_index: int, inp: AttemptInput, out: Processed, add_entry: object
) -> None:
    assert callable(add_entry)
    service = m.service_name  # type: ignore[attr-defined]
    handler = m.handler_name  # type: ignore[attr-defined]
    key = m.key or None  # type: ignore[attr-defined]
    idem = m.idempotency_key if m.HasField("idempotency_key") else None  # type: ignore[attr-defined]
    if idem:
        child = idempotent_invocation_id(service, handler, key, idem)
    else:
        child = child_invocation_id(inp.invocation_id, command_index)
    headers = [(h.key, h.value) for h in m.headers]  # type: ignore[attr-defined]
    if (tracer := tracing.current()) is not None:
        headers = tracer.call_headers(headers)
    caller = None
    invoke_time = None
    if ty == T.CALL_COMMAND:
        caller = rec.CallerRef(inp.invocation_id, m.result_completion_id)  # type: ignore[attr-defined]
    else:
        t = int(m.invoke_time)  # type: ignore[attr-defined]
        invoke_time = t if t > inp.now_ms else None
    spec = rec.ChildSpec(
        invocation_id=child,
        service=service,
        handler=handler,
        key=key,
        parameter=bytes(m.parameter),  # type: ignore[attr-defined]
        headers=headers,
        idempotency_key=idem,
        invoke_time_ms=invoke_time,
        caller=caller,
        parent_id=inp.invocation_id,
    )
    notif_idx = m.invocation_id_notification_idx  # type: ignore[attr-defined]
    add_entry(
        _notification(T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION, notif_idx, invocation_id=child)
    )
    out.resolved_completions.add(notif_idx)
    out.effects.append(rec.Effect("create", rec.encode(spec)))
