"""The SDK's state machine of the Restate service protocol (V5/V6): pure, no I/O.

- :mod:`restate_lambda.vm.journal`: the replay cursor, determinism checks, ``VMError``;
- :mod:`restate_lambda.vm.core`: phases, input and output, the replay-or-emit step;
- :mod:`restate_lambda.vm.commands`: the journal commands a handler issues;
- :mod:`restate_lambda.vm.runs`: the record of a ``ctx.run`` step;
- :mod:`restate_lambda.vm.machine`: runs, awaits, suspension, checkpoints.
"""

from __future__ import annotations

from restate_lambda.vm.core import Phase
from restate_lambda.vm.journal import VMError
from restate_lambda.vm.machine import AwaitOutcome, Machine
from restate_lambda.vm.runs import RunRecord, RunState

__all__ = ["AwaitOutcome", "Machine", "Phase", "RunRecord", "RunState", "VMError"]
