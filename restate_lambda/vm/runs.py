"""The record of one ``ctx.run`` step inside the state machine, and its life cycle.

A run is REGISTERED when the handler creates it and its result is not in the journal, EXECUTING
while its closure runs, PROPOSED once the SDK wrote its ``ProposeRunCompletion``, and JOURNALED
when its ``RunCompletionNotification`` is known to be in the journal: replayed, acknowledged by
the runtime on the stream, or committed by a checkpoint. Only a JOURNALED result is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from restate_lambda.awaitables import Result


class RunState(Enum):
    """Where a run step is (see the module docstring)."""

    REGISTERED = "registered"
    EXECUTING = "executing"
    PROPOSED = "proposed"
    JOURNALED = "journaled"


@dataclass(slots=True)
class RunRecord:
    """One ``ctx.run`` step of the current attempt."""

    completion_id: int
    command_index: int
    name: str
    state: RunState
    #: The proposed result, kept until the runtime has journaled it.
    result: Result = None
