"""A replay-aware logger: ``restate_lambda.getLogger(name)`` drops records while replaying.

A handler runs again from the top on every attempt; the commands it already journaled are
*replayed* (their results come from the journal), so a ``log.info("charging")`` before a
journaled step would print once per attempt. A logger from :func:`getLogger` carries
:class:`RestateLoggingFilter`, which drops a record emitted while the current attempt is
replaying and lets everything through once the handler is past its journal (and outside
handlers), as restate-sdk's ``restate.getLogger`` does::

    import restate_lambda as restate

    log = restate.getLogger(__name__)

    @greeter.handler()
    async def greet(ctx: restate.Context, name: str) -> str:
        log.info("greeting %s", name)          # once, not once per attempt
        ...

The attempt being run is known through a context variable set by
:meth:`restate_lambda.invocation.Attempt.run`; records that pass the filter also get the
attribute ``restate_invocation_id`` (JSON log formatters show it).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Protocol


class _Replaying(Protocol):
    """What the filter asks of the running attempt's state machine."""

    @property
    def invocation_id(self) -> str:
        """The id of the invocation being run."""
        ...

    def is_replaying(self) -> bool:
        """True while the handler re-runs commands already in the journal."""
        ...


#: The state machine of the attempt whose handler code is running in this context.
current_machine: contextvars.ContextVar[_Replaying | None] = contextvars.ContextVar(
    "restate_lambda_current_machine", default=None
)


def is_replaying() -> bool:
    """True when called from handler code that is replaying its journal."""
    machine = current_machine.get()
    if machine is None:
        return False
    try:
        return machine.is_replaying()
    except Exception:  # a failed machine: it runs no more handler code worth hiding
        return False


class RestateLoggingFilter(logging.Filter):
    """Drops records emitted while the current attempt replays (restate-sdk's filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False while replaying; otherwise True (adding ``restate_invocation_id``)."""
        if not super().filter(record):
            return False
        machine = current_machine.get()
        if machine is None:
            return True
        if is_replaying():
            return False
        if not hasattr(record, "restate_invocation_id"):
            record.restate_invocation_id = machine.invocation_id
        return True


_FILTER = RestateLoggingFilter()


def getLogger(name: str | None = None) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`RestateLoggingFilter` added (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RestateLoggingFilter) for f in logger.filters):
        logger.addFilter(_FILTER)
    return logger
