"""A ``ctx.run`` body sees the handler's context variables, whether it is a coroutine function
(run on the loop) or a plain function (run in a worker thread, as the official SDK and
``asyncio.to_thread`` do it): tracing and logging context reach a step's body."""

from __future__ import annotations

import contextvars
import threading

import restate_lambda
from restate_lambda.testing import Harness

REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="unset")

svc = restate_lambda.Service("ContextSteps")


def _sync_body() -> list[str]:
    return [REQUEST_TAG.get(), threading.current_thread().name]


async def _async_body() -> str:
    return REQUEST_TAG.get()


@svc.handler()
async def tagged(ctx: restate_lambda.Context, tag: str) -> dict[str, object]:
    REQUEST_TAG.set(tag)
    in_thread = await ctx.run("sync", _sync_body)
    on_loop = await ctx.run("async", _async_body)
    return {"sync": in_thread, "async": on_loop, "handler_thread": threading.current_thread().name}


async def test_a_step_body_sees_the_handlers_context_variables() -> None:
    async with Harness() as h:
        await h.mount(restate_lambda.app([svc]))
        out = await h.call("ContextSteps", "tagged", "order-7")
        (sync_tag, sync_thread) = out["sync"]
        assert sync_tag == "order-7" and out["async"] == "order-7"
        assert sync_thread != out["handler_thread"]  # the plain function ran off the loop
        assert REQUEST_TAG.get() == "unset"  # the handler's setting stayed in its context
