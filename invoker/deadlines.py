"""The deadline of the blocking call being served, when its host has one.

An AWS Lambda function behind API Gateway has about 29 seconds to answer (the integration's
limit) and its own timeout. The Lambda entry point sets :data:`call_deadline` for the request it
serves; :meth:`invoker.engine.Engine.call` then stores the invocation before running it when the
time left is shorter than an attempt may take, and stops waiting at the deadline, answering
with the invocation's id (:class:`invoker.api.StillRunningError`) while the invocation goes on
elsewhere: nothing accepted is lost with the function.
"""

from __future__ import annotations

from contextvars import ContextVar

#: Epoch ms by which the blocking call being served must be answered; None: no deadline.
call_deadline: ContextVar[int | None] = ContextVar("restate_lambda_call_deadline", default=None)
