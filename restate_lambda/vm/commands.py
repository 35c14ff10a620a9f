"""The commands a handler issues (state, timers, calls, awakeables, promises, output), each
through the replay-or-emit step of :class:`~restate_lambda.vm.core.MachineCore`."""

from __future__ import annotations

from typing import Any

from restate_lambda.awaitables import Failure
from restate_lambda.protocol.errors import JOURNAL_MISMATCH
from restate_lambda.protocol.messages import MessageType, pb
from restate_lambda.vm.core import MachineCore, Phase
from restate_lambda.vm.journal import VMError, failure_to_pb

T = MessageType
_MISSING: Any = object()


class MachineCommands(MachineCore):
    """One method per journal command a handler can issue."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        #: Handles of calls' invocation-id notifications -> the callee's id once known
        #: (cancelling this invocation cancels them too).
        self.tracked_calls: dict[int, str | None] = {}

    def _completable(self, t: int, msg: Any, cid: int) -> int:
        self._command(t, msg)
        return self._map(cid)

    def get_state(self, key: str) -> int:
        """Read state ``key`` (eager when known, lazy otherwise)."""
        cid = self._completion_id()
        k = key.encode()
        eager: Any = pb().GetEagerStateCommandMessage(key=k)
        lazy: Any = pb().GetLazyStateCommandMessage(key=k, result_completion_id=cid)
        known = self.state.get(key, _MISSING)
        if known is _MISSING and self.partial_state:
            first, second = (T.GET_LAZY_STATE_COMMAND, lazy), (T.GET_EAGER_STATE_COMMAND, eager)
        else:
            if known is _MISSING or known is None:
                eager.void.SetInParent()
            else:
                eager.value.content = known
            first, second = (T.GET_EAGER_STATE_COMMAND, eager), (T.GET_LAZY_STATE_COMMAND, lazy)
        t, cmd = self._command(*first, second)
        h = self._map(cid)
        if t == T.GET_EAGER_STATE_COMMAND:
            self.ready[cid] = (
                bytes(cmd.value.content) if cmd.WhichOneof("result") == "value" else None
            )
        return h

    def get_state_keys(self) -> int:
        """List state keys (eager when the whole state is known)."""
        cid = self._completion_id()
        eager: Any = pb().GetEagerStateKeysCommandMessage()
        lazy: Any = pb().GetLazyStateKeysCommandMessage(result_completion_id=cid)
        if self.partial_state:
            first = (T.GET_LAZY_STATE_KEYS_COMMAND, lazy)
            second = (T.GET_EAGER_STATE_KEYS_COMMAND, eager)
        else:
            known = sorted(k for k, v in self.state.items() if v is not None)
            eager.value.keys.extend(k.encode() for k in known)
            first = (T.GET_EAGER_STATE_KEYS_COMMAND, eager)
            second = (T.GET_LAZY_STATE_KEYS_COMMAND, lazy)
        t, cmd = self._command(*first, second)
        h = self._map(cid)
        if t == T.GET_EAGER_STATE_KEYS_COMMAND:
            self.ready[cid] = [bytes(k).decode() for k in cmd.value.keys]
        return h

    def set_state(self, key: str, value: bytes) -> None:
        """Set state ``key``."""
        self.state[key] = value
        msg = pb().SetStateCommandMessage(key=key.encode())
        msg.value.content = value
        self._command(T.SET_STATE_COMMAND, msg)

    def clear_state(self, key: str) -> None:
        """Clear state ``key``."""
        self.state[key] = None
        self._command(T.CLEAR_STATE_COMMAND, pb().ClearStateCommandMessage(key=key.encode()))

    def clear_all_state(self) -> None:
        """Clear every state key."""
        self.state.clear()
        self.partial_state = False
        self._command(T.CLEAR_ALL_STATE_COMMAND, pb().ClearAllStateCommandMessage())

    def sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        """A durable timer firing at ``wake_up_time_ms`` (epoch ms)."""
        cid = self._completion_id()
        msg = pb().SleepCommandMessage(
            wake_up_time=wake_up_time_ms, result_completion_id=cid, name=name
        )
        return self._completable(T.SLEEP_COMMAND, msg, cid)

    def call(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str = "",
        idempotency_key: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        name: str = "",
    ) -> tuple[int, int]:
        """A request-response call: (invocation-id handle, result handle)."""
        id_cid, res_cid = self._completion_id(), self._completion_id()
        msg = pb().CallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            key=key or "",
            invocation_id_notification_idx=id_cid,
            result_completion_id=res_cid,
            name=name,
        )
        _fill_call(msg, idempotency_key, headers)
        self._command(T.CALL_COMMAND, msg)
        id_h, res_h = self._map(id_cid), self._map(res_cid)
        self.tracked_calls[id_h] = None
        return id_h, res_h

    def send(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str = "",
        invoke_time_ms: int = 0,
        idempotency_key: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        name: str = "",
    ) -> int:
        """A one-way (optionally delayed) call: the invocation-id handle."""
        cid = self._completion_id()
        msg = pb().OneWayCallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            key=key or "",
            invoke_time=invoke_time_ms,
            invocation_id_notification_idx=cid,
            name=name,
        )
        _fill_call(msg, idempotency_key, headers)
        return self._completable(T.ONE_WAY_CALL_COMMAND, msg, cid)

    def awakeable(self) -> tuple[str, int]:
        """A fresh awakeable: (its ``sign_1…`` id, handle)."""
        from restate_lambda.protocol.ids import encode_awakeable_id

        if self.phase not in (Phase.REPLAYING, Phase.PROCESSING):
            raise self._state_error("create an awakeable")
        idx = self._signal
        self._signal += 1
        return encode_awakeable_id(bytes(self.start.id), idx), self._map(-idx)

    def complete_awakeable(self, awakeable_id: str, result: bytes | Failure) -> None:
        """Resolve/reject another invocation's awakeable."""
        msg = pb().CompleteAwakeableCommandMessage(awakeable_id=awakeable_id)
        if isinstance(result, Failure):
            msg.failure.CopyFrom(failure_to_pb(result, self.version >= 6))
        else:
            msg.value.content = result
        self._command(T.COMPLETE_AWAKEABLE_COMMAND, msg)

    def promise(self, kind: int, key: str, result: bytes | Failure | None = None) -> int:
        """Get (0x0409), peek (0x040A) or complete (0x040B) the workflow promise ``key``."""
        cid = self._completion_id()
        if kind == T.GET_PROMISE_COMMAND:
            msg = pb().GetPromiseCommandMessage(key=key, result_completion_id=cid)
        elif kind == T.PEEK_PROMISE_COMMAND:
            msg = pb().PeekPromiseCommandMessage(key=key, result_completion_id=cid)
        else:
            msg = pb().CompletePromiseCommandMessage(key=key, result_completion_id=cid)
            if isinstance(result, Failure):
                msg.completion_failure.CopyFrom(failure_to_pb(result, self.version >= 6))
            else:
                msg.completion_value.content = result or b""
        return self._completable(kind, msg, cid)

    def named_signal(self, name: str) -> int:
        """A handle awaiting the named signal ``name`` of this invocation."""
        if self.phase not in (Phase.REPLAYING, Phase.PROCESSING):
            raise self._state_error("await a signal")
        return self._map(name)

    def complete_signal(self, invocation_id: str, name: str, result: bytes | Failure) -> None:
        """Resolve or reject the named signal ``name`` of another invocation."""
        msg = pb().SendSignalCommandMessage(target_invocation_id=invocation_id, name=name)
        if isinstance(result, Failure):
            msg.failure.CopyFrom(failure_to_pb(result, self.version >= 6))
        else:
            msg.value.content = result
        self._command(T.SEND_SIGNAL_COMMAND, msg)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Send the CANCEL signal to another invocation."""
        msg = pb().SendSignalCommandMessage(target_invocation_id=invocation_id, idx=1)
        msg.void.SetInParent()
        self._command(T.SEND_SIGNAL_COMMAND, msg)

    def attach_invocation(self, invocation_id: str) -> int:
        """Wait for another invocation's result."""
        cid = self._completion_id()
        msg = pb().AttachInvocationCommandMessage(
            invocation_id=invocation_id, result_completion_id=cid
        )
        return self._completable(T.ATTACH_INVOCATION_COMMAND, msg, cid)

    def write_output(self, result: bytes | Failure) -> None:
        """The OutputCommand with the handler's result."""
        msg = pb().OutputCommandMessage()
        if isinstance(result, Failure):
            msg.failure.CopyFrom(failure_to_pb(result, self.version >= 6))
        else:
            msg.value.content = result
        self._command(T.OUTPUT_COMMAND, msg)

    def end(self) -> None:
        """Write EndMessage and close."""
        if self.phase is Phase.PROCESSING:
            self._emit(T.END, b"", entry=False)
            self.phase = Phase.CLOSED
        elif self.phase is not Phase.CLOSED:
            raise self._guard(
                VMError(JOURNAL_MISMATCH, "the handler ended before the journal was replayed")
            )

    def notify_error(self, err: VMError) -> None:
        """End the attempt with an ErrorMessage (retryable failure)."""
        self._fail(err)


def _fill_call(
    msg: Any, idempotency_key: str | None, headers: list[tuple[str, str]] | None
) -> None:
    if idempotency_key is not None:
        msg.idempotency_key = idempotency_key
    for k, v in headers or ():
        msg.headers.add(key=k, value=v)
