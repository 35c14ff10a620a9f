"""The protocol state machine (V5/V6): runs, awaits, suspension, checkpoints.

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
from restate_lambda.vm.commands import MachineCommands
from restate_lambda.vm.core import Phase
from restate_lambda.vm.journal import VMError, failure_to_pb
from restate_lambda.vm.runs import RunRecord, RunState

T = MessageType
_MISSING: Any = object()
_PENDING, _OK, _FAILED = 0, 1, 2


class AwaitOutcome:
    """Answer of :meth:`Machine.do_await`: what the SDK must do next (int constants: an enum
    class costs about 0.2 ms at every cold start)."""

    READY = 0  # the tree resolved: take the notifications
    EXECUTE_RUN = 1  # run the closure of ``handle``, then propose its result
    WAIT_INPUT = 2  # read more input (and/or wait for an executing run)
    WAIT_RUN = 3  # only an executing run can make progress: wait for it
    SUSPENDED = 4  # the machine wrote a SuspensionMessage: stop
    CANCELLED = 5  # the invocation was cancelled: raise TerminalError(409)
    CHECKPOINT = 6  # make the pending entries durable through the checkpoint channel


class Machine(MachineCommands):
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
        self._cancel_seen = False
        self._proposed: list[int] = []  # completion ids of the runs proposed by this attempt
        self._unacked: list[int] = []  # handles of proposed runs awaiting a checkpoint
        self._batch: list[int] = []  # handles of the runs in the checkpoint being written
        self._batch_entries = 0
        self._yielding = False

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

    def do_await(self, tree: Tree) -> tuple[int, int]:
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

    def _on_cancel(self) -> tuple[int, int]:
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
