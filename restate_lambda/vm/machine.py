"""The protocol state machine (V5/V6): commands, runs, awaits, suspension, checkpoints.

The SDK calls one method per context operation and :meth:`Machine.do_await` at await points;
the answer (:class:`AwaitOutcome`) says what to do next.

Await semantics (deterministic across replays): notifications are consumed in the order the
runtime journaled them until the awaited tree resolves.

A step is durable before the handler continues past it. When a run's closure finished, its
proposed result is used only once the runtime has journaled it:

- input open (HTTP/2 bidi, or in process with a stream): the runtime acknowledges it on the
  stream with the ``RunCompletionNotification``; the await waits for that input;
- input closed with a checkpoint channel: :data:`AwaitOutcome.CHECKPOINT` asks the SDK to hand
  the pending entries to the checkpointer; its reply (notifications the runtime journaled
  ahead of them) is fed back, and the proposed results count as journaled after those;
- input closed without a channel: the attempt suspends waiting for the run's completion, as
  the official SDKs do (one invocation per step).

``eager_runs`` (opt-in, weaker) instead lets run-only awaits use a proposed value before it is
journaled: if the attempt then dies, the next one runs the step again and may draw a different
value. Those awaits do not observe cancellation (it surfaces at the next other await), so that
their outcome cannot depend on where the runtime journals the value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from restate_lambda.awaitables import (
    CANCEL_HANDLE,
    Failure,
    FirstCompleted,
    Result,
    Tree,
    leaves,
)
from restate_lambda.protocol.errors import JOURNAL_MISMATCH
from restate_lambda.protocol.messages import MessageType, pb
from restate_lambda.run_retry import RunRetryPolicy, next_retry_delay
from restate_lambda.vm.core import MachineCore, Phase
from restate_lambda.vm.journal import VMError, failure_to_pb
from restate_lambda.vm.runs import RunRecord, RunState

T = MessageType
_MISSING: Any = object()
_PENDING, _OK, _FAILED = 0, 1, 2


class AwaitOutcome(IntEnum):
    """Answer of :meth:`Machine.do_await`: what the SDK must do next."""

    READY = 0  # the tree resolved: take the notifications
    EXECUTE_RUN = 1  # run the closure of ``handle``, then propose its result
    WAIT_INPUT = 2  # read more input (and/or wait for an executing run)
    WAIT_RUN = 3  # only an executing run can make progress: wait for it
    SUSPENDED = 4  # the machine wrote a SuspensionMessage: stop
    CANCELLED = 5  # the invocation was cancelled: raise TerminalError(409)
    CHECKPOINT = 6  # make the pending entries durable through the checkpoint channel


class Machine(MachineCore):
    """State machine of one invocation attempt.

    ``checkpoints``: a checkpoint channel is available (request-response mode);
    ``eager_runs``: without one, continue with proposed run values (weaker, see module doc).
    """

    def __init__(self, version: int, *, eager_runs: bool = False, checkpoints: bool = False):
        super().__init__(version)
        self.eager_runs = eager_runs
        self.checkpoints = checkpoints
        self.local: deque[tuple[int | str, Result]] = deque()
        self.runs: dict[int, RunRecord] = {}
        self.tracked_calls: dict[int, str | None] = {}
        self._cancel_seen = False
        self._proposed: list[int] = []  # completion ids of the runs proposed by this attempt
        self._unacked: list[int] = []  # handles of proposed runs awaiting a checkpoint
        self._batch: list[int] = []  # handles of the runs in the checkpoint being written
        self._batch_entries = 0
        self._yielding = False

    # ------------------------------------------------------------------ commands

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

    # ------------------------------------------------------------------ runs

    def run(self, name: str) -> tuple[int, bool]:
        """A ``ctx.run`` step: (handle, replayed). The closure runs when the SDK is told to."""
        cid = self._completion_id()
        self._command(T.RUN_COMMAND, pb().RunCommandMessage(result_completion_id=cid, name=name))
        h = self._map(cid)
        replayed = cid in self.ready or any(n == cid for n, _ in self.delivered)
        state = RunState.JOURNALED if replayed else RunState.REGISTERED
        self.runs[h] = RunRecord(cid, self.journal.index, name, state)
        return h, replayed

    def propose_run(self, handle: int, result: bytes | Failure) -> None:
        """Propose the outcome of an executed run closure."""
        if self.phase is not Phase.PROCESSING:
            return
        run = self.runs[handle]
        msg = pb().ProposeRunCompletionMessage(result_completion_id=run.completion_id)
        if isinstance(result, Failure):
            msg.failure.CopyFrom(failure_to_pb(result, self.version >= 6))
        else:
            msg.value = result
        self._emit(T.PROPOSE_RUN_COMPLETION, msg.SerializeToString(), entry=True)
        run.state = RunState.PROPOSED
        run.result = result
        self._proposed.append(run.completion_id)
        if not self.input_closed:
            return  # the runtime acknowledges it on the stream
        if self.checkpoints:
            self._unacked.append(handle)
        elif self.eager_runs:
            self.local.append((run.completion_id, result))

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
        if self.phase is not Phase.PROCESSING:
            return
        run = self.runs[handle]
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
                command_index=run.command_index,
                command_type=T.RUN_COMMAND,
                command_name=run.name,
                next_retry_delay_ms=None if decision is True else decision,
            )
        )

    # ------------------------------------------------------------------ checkpoints, yielding

    def take_checkpoint(self) -> tuple[int, bytes]:
        """The entries to checkpoint: (journal index of the first, framed entries)."""
        index, entries, count = self.take_entries()
        self._batch, self._unacked = self._unacked, []
        self._batch_entries = count
        return index, entries

    def checkpoint_committed(self, reply: bytes) -> None:
        """The checkpoint is durable; ``reply`` holds the notifications the runtime journaled
        ahead of its entries. The proposed results count as delivered after those."""
        foreign = self.feed_notifications(reply)
        self.journal_index += foreign + self._batch_entries
        for h in self._batch:
            run = self.runs[h]
            run.state = RunState.JOURNALED
            self.delivered.append((run.completion_id, run.result))
        self._batch, self._batch_entries = [], 0

    def checkpoint_failed(self, code: int, message: str) -> None:
        """The checkpoint failed or was fenced off: the attempt ends with an ErrorMessage."""
        self._fail(VMError(code, message))

    def can_yield(self) -> bool:
        """True if this attempt proposed a run result, so suspending now makes progress."""
        return bool(self._proposed) and self.phase is Phase.PROCESSING

    def request_yield(self, handle: int) -> None:
        """Do not execute run ``handle`` (nor any other): suspend at this step boundary once
        no closure is executing, waiting for the results this attempt proposed (journaled or
        about to be, so the runtime resumes the invocation at once in a fresh attempt)."""
        self.runs[handle].state = RunState.REGISTERED
        self._yielding = True

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
            else:
                return False
            self.ready[nid] = result
        return True

    def do_await(self, tree: Tree) -> tuple[AwaitOutcome, int]:
        """Make progress on ``tree``: returns (outcome, run handle for EXECUTE_RUN)."""
        if self.error is not None:
            raise self.error
        if self.phase not in (Phase.REPLAYING, Phase.PROCESSING):
            return AwaitOutcome.SUSPENDED, 0
        run_only = all(h in self.runs for h in self._pending(tree))
        watch_cancel = not run_only and not self._cancel_seen
        full: Tree = FirstCompleted([tree, CANCEL_HANDLE]) if watch_cancel else tree
        if self._resolve(full, run_only and self.eager_runs):
            if watch_cancel and self.is_completed(CANCEL_HANDLE):
                return self._on_cancel()
            return AwaitOutcome.READY, 0
        pending = self._pending(full)
        if self.phase is Phase.REPLAYING:
            raise self._guard(
                VMError(
                    JOURNAL_MISMATCH,
                    f"Journal mismatch at command index {self.journal.index}: an await could not "
                    "be completed from the journal during replay (waiting for "
                    f"{pending}); the handler code was changed while invocations were in flight.",
                    command_index=self.journal.index,
                    command_type=self.journal.current_type,
                    command_name=self.journal.current_name,
                )
            )
        runs = [self.runs[h] for h in pending if h in self.runs]
        if not self._yielding:
            for h in pending:
                run = self.runs.get(h)
                if run is not None and run.state is RunState.REGISTERED:
                    run.state = RunState.EXECUTING
                    return AwaitOutcome.EXECUTE_RUN, h
        if any(r.state is RunState.EXECUTING for r in runs):
            return (AwaitOutcome.WAIT_RUN if self.input_closed else AwaitOutcome.WAIT_INPUT), 0
        if self._yielding:
            self._write_suspension(self._proposed)
            return AwaitOutcome.SUSPENDED, 0
        if not self.input_closed:
            return AwaitOutcome.WAIT_INPUT, 0
        if self._unacked and any(r.state is RunState.PROPOSED for r in runs):
            return AwaitOutcome.CHECKPOINT, 0
        self._write_suspension(self.handles[h] for h in pending)
        return AwaitOutcome.SUSPENDED, 0

    def _write_suspension(self, nids: Iterable[int | str]) -> None:
        msg = pb().SuspensionMessage()
        for nid in nids:
            if isinstance(nid, str):
                msg.waiting_named_signals.append(nid)
            elif nid < 0:
                msg.waiting_signals.append(-nid)
            else:
                msg.waiting_completions.append(nid)
        self._emit(T.SUSPENSION, msg.SerializeToString(), entry=False)
        self.phase = Phase.CLOSED

    def _on_cancel(self) -> tuple[AwaitOutcome, int]:
        for h, inv in list(self.tracked_calls.items()):
            if inv is None:
                if not self._resolve(h, False):
                    if self.input_closed:
                        self._write_suspension([self.handles[h]])
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


def _fill_call(
    msg: Any, idempotency_key: str | None, headers: list[tuple[str, str]] | None
) -> None:
    if idempotency_key is not None:
        msg.idempotency_key = idempotency_key
    for k, v in headers or ():
        msg.headers.add(key=k, value=v)
