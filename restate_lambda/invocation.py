"""One invocation attempt: run the handler against the state machine, execute run closures."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from restate_lambda.awaitables import AwaitOutcome, Failure, Tree
from restate_lambda.context import Context, Request, context_class
from restate_lambda.errors import (
    RetryableError,
    SdkInternalBaseException,
    SdkInternalException,
    SuspendedException,
    TerminalError,
)
from restate_lambda.handler import Handler
from restate_lambda.journal import VMError
from restate_lambda.machine import Machine
from restate_lambda.options import RunOptions, millis
from restate_lambda.run_retry import RunRetryPolicy
from restate_lambda.serde import Serde

#: Writes output bytes to the response stream (bidi mode), or ``None`` to buffer everything.
Sink = Callable[[bytes], Awaitable[None]]
_RUN_DONE = object()


class Attempt:
    """Drives one attempt of ``handler`` on ``machine`` (which must be ready to execute)."""

    def __init__(
        self,
        machine: Machine,
        handler: Handler,
        attempt_headers: dict[str, str],
        sink: Sink | None = None,
    ) -> None:
        self.machine = machine
        self.handler = handler
        self.sink = sink
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._runs: dict[int, tuple[Any, Serde[Any], RunOptions[Any]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        headers, body = machine.sys_input()
        self.request = Request(
            id=machine.invocation_id,
            headers=dict(headers),
            attempt_headers=attempt_headers,
            body=body,
        )
        self.context: Any = context_class(handler.service_tag.kind, handler.kind)(self)

    # -- driving ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send buffered output (bidi mode only)."""
        if self.sink is not None:
            out = self.machine.take_output()
            if out:
                await self.sink(out)

    def feed(self, event: Any) -> None:
        """Deliver input bytes (``bytes``) or end of input (``None``) from the request stream."""
        self.events.put_nowait(event)

    async def poll(self, tree: Tree) -> None:
        """Block until ``tree`` resolves; raises on suspension, cancellation or failure."""
        m = self.machine
        while True:
            try:
                outcome, handle = m.do_await(tree)
            except VMError:
                raise SdkInternalException() from None
            if outcome == AwaitOutcome.READY:
                return
            if outcome == AwaitOutcome.EXECUTE_RUN:
                self._start_run(handle)
                continue
            if outcome == AwaitOutcome.CANCELLED:
                raise TerminalError("cancelled", 409)
            if outcome == AwaitOutcome.SUSPENDED:
                raise SuspendedException()
            await self.flush()
            event = await self.events.get()
            if event is _RUN_DONE:
                continue
            if event is None:
                m.close_input()
            else:
                m.feed(event)

    async def run(self) -> None:
        """Execute the handler to completion, suspension or failure."""
        m = self.machine
        h = self.handler
        try:
            if h.arity >= 2:
                try:
                    arg = h.input_serde.deserialize(self.request.body)
                except Exception as e:
                    raise TerminalError(f"Unable to parse an input argument. {e}") from e
                out = await h.fn(self.context, arg)
            else:
                out = await h.fn(self.context)
            m.write_output(h.output_serde.serialize(out))
            m.end()
        except TerminalError as t:
            self._terminal(t)
        except RetryableError as r:
            self._retryable(r, millis(r.retry_after))
        except (SdkInternalBaseException, asyncio.CancelledError):
            pass
        except Exception as e:
            cause: BaseException | None = e
            while cause is not None:
                if isinstance(cause, TerminalError):
                    self._terminal(cause)
                    break
                if isinstance(cause, RetryableError):
                    self._retryable(cause, millis(cause.retry_after))
                    break
                if isinstance(cause, SdkInternalBaseException):
                    break
                cause = cause.__cause__
            else:
                m.notify_error(VMError(500, repr(e), stacktrace=traceback.format_exc()))
        finally:
            self.request.attempt_finished_event.set()
            for task in self._tasks:
                task.cancel()
        await self.flush()

    def _terminal(self, t: TerminalError) -> None:
        try:
            self.machine.write_output(Failure(t.status_code, t.message, t.metadata))
            self.machine.end()
        except VMError:
            pass

    def _retryable(self, r: BaseException, delay_ms: int | None) -> None:
        code = getattr(r, "status_code", 500)
        self.machine.notify_error(
            VMError(code, str(r), stacktrace=traceback.format_exc(), next_retry_delay_ms=delay_ms)
        )

    # -- run closures -------------------------------------------------------------------------

    def register_run(
        self, handle: int, action: Any, serde: Serde[Any], options: RunOptions[Any]
    ) -> None:
        """Remember the closure of run ``handle`` until the machine asks to execute it."""
        self._runs[handle] = (action, serde, options)

    def _start_run(self, handle: int) -> None:
        task = asyncio.ensure_future(self._execute(handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, handle: int) -> None:
        action, serde, options = self._runs.pop(handle)
        m = self.machine
        start = monotonic()
        try:
            if asyncio.iscoroutinefunction(action) or _is_async_partial(action):
                value = await action()
            else:
                value = await asyncio.get_running_loop().run_in_executor(None, action)
            m.propose_run(handle, serde.serialize(value))
        except TerminalError as t:
            m.propose_run(handle, Failure(t.status_code, t.message, t.metadata))
        except RetryableError as r:
            fixed = (
                None
                if r.retry_after is None
                and options.max_attempts is None
                and options.max_duration is None
                else RunRetryPolicy(
                    None, 1.0, None, options.max_attempts, millis(options.max_duration)
                )
            )
            m.propose_run_retryable(
                handle,
                Failure(r.status_code, r.message),
                traceback.format_exc(),
                _elapsed_ms(start),
                fixed,
                millis(r.retry_after),
            )
        except (SdkInternalBaseException, asyncio.CancelledError):
            raise
        except Exception as e:
            m.propose_run_retryable(
                handle,
                Failure(500, repr(e)),
                traceback.format_exc(),
                _elapsed_ms(start),
                _policy(options),
            )
        finally:
            self.events.put_nowait(_RUN_DONE)


def _elapsed_ms(start: float) -> int:
    return int((monotonic() - start) * 1000)


def _is_async_partial(fn: Any) -> bool:
    import functools

    return isinstance(fn, functools.partial) and asyncio.iscoroutinefunction(fn.func)


def _policy(o: RunOptions[Any]) -> RunRetryPolicy | None:
    duration = o.max_duration or o.max_retry_duration
    if (
        o.max_attempts is None
        and duration is None
        and o.initial_retry_interval is None
        and o.max_retry_interval is None
        and o.retry_interval_factor is None
    ):
        return None
    return RunRetryPolicy(
        initial_interval_ms=millis(o.initial_retry_interval) or 50,
        factor=o.retry_interval_factor or 2.0,
        max_interval_ms=millis(o.max_retry_interval) or 10_000,
        max_attempts=o.max_attempts,
        max_duration_ms=millis(duration),
    )


__all__ = ["Attempt", "Context"]
