"""The record of one ``ctx.run`` step inside the state machine, and its life cycle.

A run is REGISTERED when the handler creates it and its result is not in the journal, EXECUTING
while its closure runs, PROPOSED once the SDK wrote its ``ProposeRunCompletion``, and JOURNALED
when its ``RunCompletionNotification`` is known to be in the journal: replayed, acknowledged by
the runtime on the stream, or committed by a checkpoint. Only a JOURNALED result is durable.
"""

from __future__ import annotations

from enum import Enum

from restate_lambda.awaitables import Result


class RunState(Enum):
    """Where a run step is (see the module docstring)."""

    REGISTERED = "registered"
    EXECUTING = "executing"
    PROPOSED = "proposed"
    JOURNALED = "journaled"


class RunRecord:
    """One ``ctx.run`` step of the current attempt: its completion id, the index and name of its
    RunCommand, its state and (once proposed) its result, kept until it is journaled.

    (A plain class with slots: a dataclass costs a noticeable share of the SDK's cold start.)
    """

    __slots__ = ("command_index", "completion_id", "name", "result", "state")

    def __init__(self, completion_id: int, command_index: int, name: str, state: RunState) -> None:
        self.completion_id = completion_id
        self.command_index = command_index
        self.name = name
        self.state = state
        self.result: Result = None

    def __repr__(self) -> str:
        return (
            f"RunRecord({self.completion_id}, {self.command_index}, {self.name!r}, "
            f"{self.state.name})"
        )
