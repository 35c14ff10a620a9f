"""One invocation attempt: run the handler against the state machine, execute run closures,
make run results durable (checkpoints) and stop early before a deadline."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import traceback
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from restate_lambda.awaitables import Failure, Result, Tree
from restate_lambda.context import Request
from restate_lambda.errors import (
    RetryableError,
    SdkInternalBaseException,
    SdkInternalException,
    SuspendedException,
    TerminalError,
)
from restate_lambda.logger import current_machine
from restate_lambda.options import RunOptions, millis
from restate_lambda.run_retry import RunRetryPolicy
from restate_lambda.server_context import context_class
from restate_lambda.step_threads import run_in_step_thread
from restate_lambda.vm.journal import VMError
from restate_lambda.vm.machine import AwaitOutcome, Machine

if TYPE_CHECKING:
    from restate_lambda.checkpoint import CheckpointChannel
    from restate_lambda.deadline import Deadline
    from restate_lambda.futures import Driver
    from restate_lambda.handler import Handler
    from restate_lambda.serde import Serde

#: Writes output bytes to the response stream (bidi mode), or ``None`` to buffer everything.
Sink = Callable[[bytes], Awaitable[None]]
_RUN_DONE = object()


class Attempt:
    """Drives one attempt of ``handler`` on ``machine`` (which must be ready to execute).

    ``channel``: the checkpoint channel offered for this attempt (request-response mode);
    ``deadline``: stop at a step boundary when it is near (AWS Lambda).
    """

    def __init__(
        self,
        machine: Machine,
        handler: Handler,
        attempt_headers: dict[str, str],
        sink: Sink | None = None,
        channel: CheckpointChannel | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.machine = machine
        self.handler = handler
        self.sink = sink
        self.channel = channel
        self.deadline = deadline
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._runs: dict[int, tuple[Any, Serde[Any], RunOptions[Any], str]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        headers, body = machine.sys_input()
        self.request = Request(
            id=machine.invocation_id,
            headers=dict(headers),
            attempt_headers=attempt_headers,
            body=body,
        )
        self.context: Any = context_class(handler.service_tag.kind, handler.kind)(self)

    # -- what futures and the context use -------------------------------------------------

    @property
    def driver(self) -> Driver:
        """This attempt, as the driver of its futures."""
        return self

    def is_completed(self, handle: int) -> bool:
        """True if the notification of ``handle`` is ready."""
        return self.machine.is_completed(handle)

    def take(self, handle: int) -> Result:
        """Consume the ready notification of ``handle``."""
        return self.machine.take(handle)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Send the CANCEL signal to another invocation."""
        self.machine.cancel_invocation(invocation_id)

    def promise(self, kind: int, key: str, result: bytes | Failure | None = None) -> int:
        """Get, peek or complete a workflow promise."""
        return self.machine.promise(kind, key, result)

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
                if self.deadline is not None and m.can_yield() and self.deadline.near():
                    m.request_yield(handle)
                else:
                    self._start_run(handle)
                continue
            if outcome == AwaitOutcome.CHECKPOINT:
                await self._checkpoint()
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

    async def _checkpoint(self) -> None:
        """Make the pending entries durable; the handler continues only once they are."""
        from restate_lambda.checkpoint import CheckpointBatch, CheckpointError

        m = self.machine
        assert self.channel is not None
        index, entries = m.take_checkpoint()
        batch = CheckpointBatch(m.invocation_id, self.channel.token, index, entries, m.version)
        try:
            reply = await self.channel.checkpointer.checkpoint(batch)
        except CheckpointError as e:
            m.checkpoint_failed(e.code, f"checkpoint failed: {e}")
            raise SdkInternalException(str(e)) from None
        except Exception as e:
            m.checkpoint_failed(503, f"checkpoint failed: {e!r}")
            raise SdkInternalException(repr(e)) from None
        try:
            m.checkpoint_committed(reply or b"")
        except VMError:
            raise SdkInternalException() from None

    async def run(self) -> None:
        """Execute the handler to completion, suspension or failure."""
        m = self.machine
        h = self.handler
        token = current_machine.set(m)  # restate_lambda.getLogger's loggers ask it
        try:
            if h.arity >= 2:
                try:
                    arg = h.input_serde.deserialize(self.request.body)
                except Exception as e:
                    raise TerminalError(f"Unable to parse an input argument. {e}") from e
                out = await h.fn(self.context, arg)
            else:
                out = await h.fn(self.context)
            try:
                payload = h.output_serde.serialize(out)
            except Exception as e:  # retrying cannot help: the same value comes back
                raise TerminalError(
                    f"{self._where()}: the return value ({type(out).__name__}) cannot be "
                    f"serialized: {e}"
                ) from e
            m.write_output(payload)
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
            current_machine.reset(token)
            self.request.attempt_finished_event.set()
            for task in self._tasks:
                task.cancel()
        await self.flush()

    def _where(self) -> str:
        h = self.handler
        return f"{h.service_tag.name}/{h.name}"

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
        self,
        handle: int,
        action: Any,
        serde: Serde[Any],
        options: RunOptions[Any],
        name: str = "",
    ) -> None:
        """Remember the closure of run ``handle`` (named ``name``) until the machine asks to
        execute it."""
        self._runs[handle] = (action, serde, options, name)

    def _start_run(self, handle: int) -> None:
        task = asyncio.ensure_future(self._execute(handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, handle: int) -> None:
        action, serde, options, name = self._runs.pop(handle)
        m = self.machine
        start = monotonic()
        try:
            if asyncio.iscoroutinefunction(action) or _is_async_partial(action):
                value = await action()
            else:
                # In a worker thread, with the handler's context variables (as the official SDK
                # and asyncio.to_thread do): tracing and logging context reach the step's body.
                body = functools.partial(contextvars.copy_context().run, action)
                value = await run_in_step_thread(body)
            try:
                payload = serde.serialize(value)
            except Exception as e:  # retrying cannot help: the step would return it again
                raise TerminalError(
                    f"{self._where()}: the result of ctx.run({name!r}) "
                    f"({type(value).__name__}) cannot be serialized: {e}"
                ) from e
            m.propose_run(handle, payload)
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


__all__ = ["Attempt"]
