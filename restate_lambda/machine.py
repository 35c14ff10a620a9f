"""The protocol state machine (V5/V6): replay, determinism checks, awaits, suspension.

Pure: bytes in (:meth:`Machine.feed`), bytes out (:meth:`Machine.take_output`), no I/O.
The SDK calls one method per context operation and :meth:`Machine.do_await` at await points.

Await semantics (deterministic across replays): notifications are consumed in the order the
runtime journaled them until the awaited tree resolves. Await trees made only of ``ctx.run``
handles do not observe cancellation (it surfaces at the next other await), so that a run's
result can be used right after it is proposed ("eager runs", on by default once the input is
closed): the proposed value is queued *after* every notification the runtime delivered and is
only consumed by run-only awaits, whose outcome cannot depend on where the runtime journals it
relative to notifications this attempt never saw.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

from restate_lambda.awaitables import (
    CANCEL_HANDLE,
    AllCompleted,
    AwaitOutcome,
    Failure,
    FirstCompleted,
    Result,
    Tree,
    leaves,
)
from restate_lambda.journal import Journal, VMError, decode_notification, failure_to_pb
from restate_lambda.protocol.errors import JOURNAL_MISMATCH, PROTOCOL_VIOLATION, ProtocolError
from restate_lambda.protocol.framing import FrameDecoder, encode_raw
from restate_lambda.protocol.messages import MessageType, is_command, is_notification, parse, pb
from restate_lambda.run_retry import RunRetryPolicy, next_retry_delay

T = MessageType
WAITING_START, WAITING_ENTRIES, REPLAYING, PROCESSING, CLOSED = range(5)
_MISSING = object()
_PENDING, _OK, _FAILED = 0, 1, 2


class Machine:
    """State machine of one invocation attempt."""

    def __init__(self, version: int, *, eager_runs: bool = True) -> None:
        self.version = version
        self.eager_runs = eager_runs
        self.phase = WAITING_START
        self.error: VMError | None = None
        self.input_closed = False
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self.journal = Journal()
        self.start: Any = None
        self._received = 0
        self._first_new = False
        self._completion = 1
        self._signal = 17
        self._next_handle = 17
        self.handles: dict[int, int | str] = {CANCEL_HANDLE: -1}
        self.ready: dict[int | str, Result] = {}
        self.delivered: deque[tuple[int | str, Result]] = deque()
        self.local: deque[tuple[int | str, Result]] = deque()
        self.runs: dict[int, list[Any]] = {}  # handle -> [executing, command index, name]
        self.run_handles: set[int] = set()
        self.tracked_calls: dict[int, str | None] = {}
        self.state: dict[str, bytes | None] = {}
        self.partial_state = True
        self.eager_runs_used = 0
        self._cancel_seen = False

    # ------------------------------------------------------------------ input / output

    def feed(self, data: bytes) -> None:
        """Consume bytes of the request stream."""
        if self.error is not None or self.phase == CLOSED:
            return
        try:
            for frame in self._decoder.feed(data):
                self._on_message(frame.type, frame.payload)
        except ProtocolError as e:
            self._fail(VMError(e.code, e.message))
        except VMError as e:
            self._fail(e)

    def close_input(self) -> None:
        """The runtime closed its side of the stream."""
        self.input_closed = True
        if self.error is not None or self.phase == CLOSED:
            return
        try:
            self._decoder.finish()
        except ProtocolError as e:
            self._fail(VMError(e.code, e.message))
            return
        if self.phase in (WAITING_START, WAITING_ENTRIES):
            self._fail(VMError(PROTOCOL_VIOLATION, "input closed before the journal was replayed"))

    def take_output(self) -> bytes:
        """Frames written since the last call."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        """True once End, Suspension or Error was written."""
        return self.phase == CLOSED or self.error is not None

    def is_ready(self) -> bool:
        """True once the start message and all known entries arrived (VMError if failed)."""
        if self.error is not None:
            raise self.error
        return self.phase in (REPLAYING, PROCESSING)

    def is_replaying(self) -> bool:
        """True while commands remain to be replayed."""
        return self.phase == REPLAYING

    def _on_message(self, t: int, payload: bytes) -> None:
        if t == T.START:
            if self.phase != WAITING_START:
                raise VMError(PROTOCOL_VIOLATION, "unexpected second StartMessage")
            self._on_start(parse(t, payload))
            return
        if self.phase == WAITING_START:
            raise VMError(PROTOCOL_VIOLATION, "the first message must be a StartMessage")
        if is_command(t):
            if self.phase != WAITING_ENTRIES:
                raise VMError(PROTOCOL_VIOLATION, "commands are only expected during replay")
            self.journal.commands.append((t, payload))
        elif is_notification(t):
            self.delivered.append(decode_notification(t, payload))
        else:
            raise VMError(PROTOCOL_VIOLATION, f"unexpected message type 0x{t:04X}")
        if self.phase == WAITING_ENTRIES:
            self._received += 1
            if self._received >= self.start.known_entries:
                self.phase = REPLAYING

    def _on_start(self, msg: Any) -> None:
        self.start = msg
        self.partial_state = bool(msg.partial_state)
        for entry in msg.state_map:
            self.state[bytes(entry.key).decode()] = bytes(entry.value)
        if msg.known_entries == 0:
            raise VMError(500, "StartMessage.known_entries is 0, expected at least 1")
        self.phase = WAITING_ENTRIES

    def _fail(self, err: VMError) -> None:
        if self.error is None and self.phase != CLOSED:
            self._out.append(err.to_frame())
        self.error = err
        self.phase = CLOSED

    def _guard(self, err: VMError) -> VMError:
        self._fail(err)
        return err

    # ------------------------------------------------------------------ invocation data

    @property
    def invocation_id(self) -> str:
        """The printable invocation id (``inv_1…``)."""
        return str(self.start.debug_id)

    @property
    def key(self) -> str:
        """Object/workflow key, empty for services."""
        return str(self.start.key)

    @property
    def random_seed(self) -> int:
        """V6: StartMessage.random_seed; V5: first 8 bytes of SHA-256(invocation id), BE."""
        if self.version >= 6:
            return int(self.start.random_seed)
        return int.from_bytes(hashlib.sha256(bytes(self.start.id)).digest()[:8], "big")

    def sys_input(self) -> tuple[list[tuple[str, str]], bytes]:
        """Replay the InputCommand: (headers, body)."""
        msg = self._command(T.INPUT_COMMAND, pb().InputCommandMessage())
        return [(h.key, h.value) for h in msg.headers], bytes(msg.value.content)

    # ------------------------------------------------------------------ commands

    def _command(self, t: int, expected: Any) -> Any:
        if self.phase == PROCESSING:
            self.journal.advance(t, _name(expected))
            self._first_new = False
            self._out.append(encode_raw(t, expected.SerializeToString()))
            return expected
        if self.phase == REPLAYING:
            self.journal.advance(t, _name(expected))
            try:
                actual = self.journal.pop(t, expected)
            except VMError as e:
                raise self._guard(e) from None
            self._after_pop()
            return actual
        raise self._state_error(MessageType(t).name)

    def _after_pop(self) -> None:
        if not self.journal.commands:
            self.phase = PROCESSING
            self._first_new = True

    def _state_error(self, what: str) -> VMError:
        if self.error is not None:
            return self.error
        return VMError(PROTOCOL_VIOLATION, f"cannot {what} in the current state (closed)")

    def _map(self, nid: int | str) -> int:
        h = self._next_handle
        self._next_handle += 1
        self.handles[h] = nid
        return h

    def _completion_id(self) -> int:
        cid = self._completion
        self._completion += 1
        return cid

    def _completable(self, t: int, msg: Any, cid: int) -> int:
        self._command(t, msg)
        return self._map(cid)

    def get_state(self, key: str) -> int:
        """Read state ``key`` (eager when known, lazy otherwise)."""
        cid = self._completion_id()
        if self.phase == REPLAYING:
            self.journal.advance(T.GET_EAGER_STATE_COMMAND, "")
            t, payload = self.journal.commands.popleft()
            if t == T.GET_EAGER_STATE_COMMAND:
                actual: Any = parse(t, payload)
                if bytes(actual.key) != key.encode():
                    raise self._guard(self.journal.mismatch(t, actual, t, _eager_get(key)))
                self._after_pop()
                h = self._map(cid)
                self.ready[cid] = (
                    bytes(actual.value.content) if actual.WhichOneof("result") == "value" else None
                )
                return h
            if t == T.GET_LAZY_STATE_COMMAND:
                actual = parse(t, payload)
                exp: Any = pb().GetLazyStateCommandMessage(
                    key=key.encode(), result_completion_id=cid
                )
                if actual != exp:
                    raise self._guard(self.journal.mismatch(t, actual, t, exp))
                self._after_pop()
                return self._map(cid)
            raise self._guard(self.journal.mismatch(t, None, T.GET_EAGER_STATE_COMMAND, None))
        known = self.state.get(key, _MISSING)
        if known is _MISSING and self.partial_state:
            msg = pb().GetLazyStateCommandMessage(key=key.encode(), result_completion_id=cid)
            return self._completable(T.GET_LAZY_STATE_COMMAND, msg, cid)
        value = None if known is _MISSING else known
        msg = _eager_get(key)
        if value is None:
            msg.void.SetInParent()
        else:
            assert isinstance(value, bytes)
            msg.value.content = value
        self._command(T.GET_EAGER_STATE_COMMAND, msg)
        h = self._map(cid)
        self.ready[cid] = value
        return h

    def get_state_keys(self) -> int:
        """List state keys (eager when the whole state is known)."""
        cid = self._completion_id()
        if self.phase == REPLAYING:
            self.journal.advance(T.GET_EAGER_STATE_KEYS_COMMAND, "")
            t, payload = self.journal.commands.popleft()
            actual: Any = parse(t, payload) if t in _KEYS_TYPES else None
            if actual is None:
                raise self._guard(
                    self.journal.mismatch(t, None, T.GET_EAGER_STATE_KEYS_COMMAND, None)
                )
            self._after_pop()
            h = self._map(cid)
            if t == T.GET_EAGER_STATE_KEYS_COMMAND:
                self.ready[cid] = [bytes(k).decode() for k in actual.value.keys]
            return h
        if self.partial_state:
            msg = pb().GetLazyStateKeysCommandMessage(result_completion_id=cid)
            return self._completable(T.GET_LAZY_STATE_KEYS_COMMAND, msg, cid)
        keys = sorted(k for k, v in self.state.items() if v is not None)
        msg = pb().GetEagerStateKeysCommandMessage()
        msg.value.keys.extend(k.encode() for k in keys)
        self._command(T.GET_EAGER_STATE_KEYS_COMMAND, msg)
        h = self._map(cid)
        self.ready[cid] = keys
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

        if self.phase not in (REPLAYING, PROCESSING):
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

    def run(self, name: str) -> tuple[int, bool]:
        """A ``ctx.run`` step: (handle, replayed). The closure runs when the SDK is told to."""
        cid = self._completion_id()
        self._command(T.RUN_COMMAND, pb().RunCommandMessage(result_completion_id=cid, name=name))
        h = self._map(cid)
        self.run_handles.add(h)
        replayed = cid in self.ready or any(n == cid for n, _ in self.delivered)
        if not replayed:
            self.runs[h] = [False, self.journal.index, name]
        return h, replayed

    def propose_run(self, handle: int, result: bytes | Failure) -> None:
        """Propose the outcome of an executed run closure."""
        if self.phase != PROCESSING:
            return
        cid = self.handles[handle]
        assert isinstance(cid, int)
        self.runs.pop(handle, None)
        msg = pb().ProposeRunCompletionMessage(result_completion_id=cid)
        if isinstance(result, Failure):
            msg.failure.CopyFrom(failure_to_pb(result, self.version >= 6))
        else:
            msg.value = result
        self._out.append(encode_raw(T.PROPOSE_RUN_COMPLETION, msg.SerializeToString()))
        if self.eager_runs and self.input_closed:
            self.local.append((cid, result))

    def propose_run_retryable(
        self,
        handle: int,
        failure: Failure,
        stacktrace: str,
        attempt_ms: int,
        policy: RunRetryPolicy | None,
        delay_override_ms: int | None = None,
    ) -> None:
        """A run closure failed with a retryable error: retry the attempt or fail the step."""
        if self.phase != PROCESSING:
            return
        _, index, name = self.runs.get(handle, [False, self.journal.index, ""])
        count, duration = 0, 0
        if self._first_new and self.start is not None:
            count = int(self.start.retry_count_since_last_stored_entry)
            duration = int(self.start.duration_since_last_stored_entry) if count else 0
        decision = next_retry_delay(policy, count + 1, duration + attempt_ms, delay_override_ms)
        if decision is False:
            self.propose_run(handle, Failure(failure.code, failure.message))
            return
        self._fail(
            VMError(
                failure.code,
                failure.message,
                stacktrace=stacktrace,
                command_index=index,
                command_type=T.RUN_COMMAND,
                command_name=name,
                next_retry_delay_ms=None if decision is True else decision,
            )
        )

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
        if self.phase == PROCESSING:
            self._out.append(encode_raw(T.END, b""))
            self.phase = CLOSED
        elif self.phase != CLOSED:
            raise self._guard(
                VMError(JOURNAL_MISMATCH, "the handler ended before the journal was replayed")
            )

    def notify_error(self, err: VMError) -> None:
        """End the attempt with an ErrorMessage (retryable failure)."""
        self._fail(err)

    # ------------------------------------------------------------------ awaiting

    def is_completed(self, handle: int) -> bool:
        """True if the notification of ``handle`` is ready (or was already taken)."""
        nid = self.handles.get(handle, _MISSING)
        return nid is _MISSING or nid in self.ready

    def take(self, handle: int) -> Result:
        """Consume the ready notification of ``handle``."""
        nid = self.handles.pop(handle)
        result = self.ready.pop(nid)
        if handle in self.tracked_calls and isinstance(result, str):
            self.tracked_calls[handle] = result
        return result

    def _state_of(self, tree: Tree) -> int:
        if isinstance(tree, int):
            nid = self.handles.get(tree)
            if nid is None:
                return _OK
            r: Any = self.ready.get(nid, _MISSING)
            return _PENDING if r is _MISSING else _FAILED if isinstance(r, Failure) else _OK
        states = [self._state_of(c) for c in tree.children]
        if isinstance(tree, FirstCompleted):
            return _OK if any(s != _PENDING for s in states) else _PENDING
        return _PENDING if _PENDING in states else _OK

    def _pending(self, tree: Tree) -> list[int]:
        return [h for h in leaves(tree) if not self.is_completed(h)]

    def _resolve(self, tree: Tree, use_local: bool) -> bool:
        while self._state_of(tree) == _PENDING:
            if self.delivered:
                nid, result = self.delivered.popleft()
            elif use_local and self.local:
                nid, result = self.local.popleft()
                self.eager_runs_used += 1
            else:
                return False
            self.ready[nid] = result
        return True

    def do_await(self, tree: Tree) -> tuple[int, int]:
        """Make progress on ``tree``: returns (AwaitOutcome, run handle for EXECUTE_RUN)."""
        if self.error is not None:
            raise self.error
        if self.phase not in (REPLAYING, PROCESSING):
            return AwaitOutcome.SUSPENDED, 0
        run_only = all(h in self.run_handles for h in self._pending(tree))
        watch_cancel = not run_only and not self._cancel_seen
        full: Tree = FirstCompleted([tree, CANCEL_HANDLE]) if watch_cancel else tree
        if self._resolve(full, run_only):
            if watch_cancel and self.is_completed(CANCEL_HANDLE):
                return self._on_cancel()
            return AwaitOutcome.READY, 0
        pending = self._pending(full)
        if self.phase == REPLAYING:
            raise self._guard(
                VMError(
                    JOURNAL_MISMATCH,
                    f"Journal mismatch at command index {self.journal.index}: an await could not "
                    "be "
                    f"completed from the journal during replay (waiting for {pending}); "
                    "the handler code was changed while invocations were in flight.",
                    command_index=self.journal.index,
                    command_type=self.journal.current_type,
                    command_name=self.journal.current_name,
                )
            )
        for h in pending:
            run = self.runs.get(h)
            if run is not None and not run[0]:
                run[0] = True
                return AwaitOutcome.EXECUTE_RUN, h
        if any(self.runs.get(h, (False,))[0] for h in pending):
            return (AwaitOutcome.WAIT_RUN if self.input_closed else AwaitOutcome.WAIT_INPUT), 0
        if self.input_closed:
            self._suspend(pending)
            return AwaitOutcome.SUSPENDED, 0
        return AwaitOutcome.WAIT_INPUT, 0

    def _suspend(self, pending: list[int]) -> None:
        msg = pb().SuspensionMessage()
        for h in pending:
            nid = self.handles[h]
            if isinstance(nid, str):
                msg.waiting_named_signals.append(nid)
            elif nid < 0:
                msg.waiting_signals.append(-nid)
            else:
                msg.waiting_completions.append(nid)
        self._out.append(encode_raw(T.SUSPENSION, msg.SerializeToString()))
        self.phase = CLOSED

    def _on_cancel(self) -> tuple[int, int]:
        for h, inv in list(self.tracked_calls.items()):
            if inv is None:
                if not self._resolve(h, False):
                    if self.input_closed:
                        self._suspend([h])
                        return AwaitOutcome.SUSPENDED, 0
                    return AwaitOutcome.WAIT_INPUT, 0
                nid = self.handles.get(h)
                value = self.ready.get(nid) if nid is not None else None
                self.tracked_calls[h] = value if isinstance(value, str) else None
        for inv in [i for i in self.tracked_calls.values() if i]:
            self.cancel_invocation(inv)
        self.tracked_calls.clear()
        self.take(CANCEL_HANDLE)
        self._cancel_seen = True
        return AwaitOutcome.CANCELLED, 0


_KEYS_TYPES = (T.GET_EAGER_STATE_KEYS_COMMAND, T.GET_LAZY_STATE_KEYS_COMMAND)


def _name(msg: Any) -> str:
    return str(getattr(msg, "entry_name", "") or getattr(msg, "name", "") or "")


def _eager_get(key: str) -> Any:
    return pb().GetEagerStateCommandMessage(key=key.encode())


def _fill_call(
    msg: Any, idempotency_key: str | None, headers: list[tuple[str, str]] | None
) -> None:
    if idempotency_key is not None:
        msg.idempotency_key = idempotency_key
    for k, v in headers or ():
        msg.headers.add(key=k, value=v)


__all__ = ["AllCompleted", "Machine"]
