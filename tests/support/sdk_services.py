"""Handlers written with the official ``restate-sdk`` (1.2) for the end-to-end scenarios.

The module is served in a separate process (see ``tests.support.processes``), so side effects that
tests must count are written to files: every ``record(tag, what)`` appends one line ``what`` to
``$E2E_EFFECTS_DIR/<tag>.log``. A test picks a fresh ``tag`` per scenario and reads the lines back
with ``tests.support.effects.read_effects``. Lines appended inside ``ctx.run`` count executions of
a journaled step; lines appended outside it count (re)executions of the handler body.

Run with any ASGI server as ``tests.support.sdk_services:app``; serve it over HTTP/1.1 so that
the SDK answers discovery in request-response mode.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
    WorkflowSharedContext,
)

EFFECTS_ENV = "E2E_EFFECTS_DIR"


def _effects_file(tag: str) -> Path:
    root = os.environ.get(EFFECTS_ENV)
    if not root:
        raise RuntimeError(f"{EFFECTS_ENV} is not set")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    return Path(root) / f"{safe}.log"


def record(tag: str, what: str) -> str:
    """Append one line to the effects file of ``tag`` (O_APPEND: atomic for short lines)."""
    fd = os.open(_effects_file(tag), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (what + "\n").encode())
    finally:
        os.close(fd)
    return what


def count(tag: str, what: str) -> int:
    """How many lines equal to ``what`` the effects file of ``tag`` holds."""
    try:
        lines = _effects_file(tag).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line == what)


# --------------------------------------------------------------------------- Greeter (service)

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


# --------------------------------------------------------------------------- Counter (object)

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    value += delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return (await ctx.get("count", type_hint=int)) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear("count")


# --------------------------------------------------------------------------- Steps (service)

steps = restate.Service("Steps")


@steps.handler()
async def run(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """``{"tag": str, "n": int}`` -> ``{"results": [...], "invocation_id": str}``.

    Each step appends ``step-i`` to the effects file, inside ``ctx.run``.
    """
    tag = req["tag"]
    results = []
    for i in range(int(req["n"])):
        name = f"step-{i}"
        results.append(await ctx.run_typed(name, record, restate.RunOptions(), tag, name))
    return {"results": results, "invocation_id": ctx.request().id}


# --------------------------------------------------------------------------- Flaky (service)

flaky = restate.Service("Flaky")


@flaky.handler(name="run")
async def flaky_run(ctx: Context, req: dict[str, Any]) -> str:
    """``{"tag": str, "fail_times": K}``: one step, then K retryable failures, then one more step.

    The failure counter lives in the effects file (outside the journal), so exactly K attempts fail
    however often the body is replayed. ``before`` and ``after`` lines count step executions.
    """
    tag, fail_times = req["tag"], int(req["fail_times"])
    await ctx.run_typed("before", record, restate.RunOptions(), tag, "before")
    if count(tag, "failure") < fail_times:
        record(tag, "failure")
        raise RuntimeError(f"flaky failure #{count(tag, 'failure')}")
    await ctx.run_typed("after", record, restate.RunOptions(), tag, "after")
    return f"ok after {fail_times} failures"


# --------------------------------------------------------------------------- Failer (service)

failer = restate.Service("Failer")


@failer.handler()
async def fail(ctx: Context, tag: str) -> str:
    """Records one ``attempt`` line per execution of the body, then fails terminally with 418."""
    record(tag, "attempt")
    raise TerminalError("nope", status_code=418)


# --------------------------------------------------------------------------- Sleeper (service)

sleeper = restate.Service("Sleeper")


@sleeper.handler()
async def sleep(ctx: Context, req: dict[str, Any]) -> str:
    """``{"tag": str, "ms": int}``: step ``before``, durable sleep, step ``after``."""
    tag, ms = req["tag"], int(req["ms"])
    await ctx.run_typed("before", record, restate.RunOptions(), tag, "before")
    record(tag, "sleeping")  # not journaled: one line per execution that reaches the sleep
    await ctx.sleep(timedelta(milliseconds=ms))
    await ctx.run_typed("after", record, restate.RunOptions(), tag, "after")
    return f"slept {ms} ms"


# --------------------------------------------------------------------------- Internal (private)

internal = restate.Service("Internal", ingress_private=True)


@internal.handler()
async def secret(ctx: Context, name: str) -> str:
    return f"secret for {name}"


# --------------------------------------------------------------------------- Awaiter (object)

awaiter = restate.VirtualObject("Awaiter")


@awaiter.handler()
async def wait(ctx: ObjectContext) -> str:
    """Creates an awakeable, publishes its id in state ``awakeable_id``, and awaits it.

    A rejection propagates as the terminal failure of this invocation.
    """
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awakeable_id", awakeable_id)
    value = await fut
    return f"got {value}"


@awaiter.handler(kind="shared")
async def awakeable_id(ctx: ObjectSharedContext) -> str | None:
    return await ctx.get("awakeable_id", type_hint=str)


# --------------------------------------------------------------------------- Signup (workflow)

signup = restate.Workflow("Signup")


@signup.main(name="run")
async def signup_run(ctx: WorkflowContext, req: dict[str, Any]) -> str:
    """``{"email": str, "tag": str}``: sends the (recorded) e-mail, waits for the ``link``
    promise, then marks the workflow verified."""
    tag, email = req["tag"], req["email"]
    await ctx.run_typed("send-email", record, restate.RunOptions(), tag, "send-email")
    ctx.set("status", "waiting")
    secret_value = await ctx.promise("link", type_hint=str).value()
    ctx.set("status", "verified")
    return f"verified {email} with {secret_value}"


@signup.handler()
async def click(ctx: WorkflowSharedContext, secret_value: str) -> None:
    await ctx.promise("link", type_hint=str).resolve(secret_value)


@signup.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("status", type_hint=str)


# --------------------------------------------------------------------------- Cancellable (service)

cancellable = restate.Service("Cancellable")


@cancellable.handler(name="run")
async def long_sleep(ctx: Context, tag: str) -> str:
    """Step ``start``, a 1-hour sleep; on ``TerminalError`` (cancellation) runs the journaled
    compensation step ``compensate`` and re-raises. ``sleeping`` (not journaled) tells the test
    that the body reached the sleep."""
    try:
        await ctx.run_typed("start", record, restate.RunOptions(), tag, "start")
        record(tag, "sleeping")
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        await ctx.run_typed("compensate", record, restate.RunOptions(), tag, "compensate")
        raise
    return "woke up"


# --------------------------------------------------------------------------- Caller (service)

caller = restate.Service("Caller")


@caller.handler()
async def call_greet(ctx: Context, name: str) -> str:
    """Request-response call to ``Greeter.greet``."""
    return await ctx.service_call(greet, name)


@caller.handler()
async def call_private(ctx: Context, name: str) -> str:
    """Calls the ingress-private ``Internal.secret``: reachable from handlers."""
    return await ctx.service_call(secret, name)


@caller.handler()
async def send_add(ctx: Context, req: dict[str, Any]) -> str:
    """``{"key": str, "delta": int, "delay_ms"?: int}``: one-way (optionally delayed) send to
    ``Counter.add``; returns the id of the invocation it created."""
    delay_ms = req.get("delay_ms")
    handle = ctx.object_send(
        add,
        req["key"],
        int(req["delta"]),
        send_delay=timedelta(milliseconds=int(delay_ms)) if delay_ms else None,
    )
    return await handle.invocation_id()


@caller.handler()
async def send_greet(ctx: Context, req: dict[str, Any]) -> str:
    """``{"name": str, "delay_ms"?: int}``: one-way (optionally delayed) ``service_send``."""
    delay_ms = req.get("delay_ms")
    handle = ctx.service_send(
        greet,
        req["name"],
        send_delay=timedelta(milliseconds=int(delay_ms)) if delay_ms else None,
    )
    return await handle.invocation_id()


@caller.handler()
async def call_cancellable(ctx: Context, tag: str) -> str:
    """Calls ``Cancellable.run`` (which sleeps an hour) and awaits it; records the callee's
    invocation id as ``child <id>`` in the effects of ``<tag>-parent`` (not journaled)."""
    fut = ctx.service_call(long_sleep, tag)
    record(f"{tag}-parent", f"child {await fut.invocation_id()}")
    return await fut


# --------------------------------------------------------------------------- Signals (service)

signals = restate.Service("Signals")


@signals.handler()
async def wait_signal(ctx: Context, tag: str) -> str:
    """Records ``waiting`` (not journaled), then awaits the named signal ``go``."""
    record(tag, "waiting")
    return f"got {await ctx.signal('go', type_hint=str)}"


@signals.handler()
async def send_signal(ctx: Context, req: dict[str, Any]) -> None:
    """``{"id", "value"}``: resolves the named signal ``go`` of invocation ``id``."""
    ctx.resolve_signal(req["id"], "go", req["value"])


@signals.handler()
async def reject_signal(ctx: Context, req: dict[str, Any]) -> None:
    """``{"id", "message"}``: rejects the named signal ``go`` of invocation ``id`` (code 418)."""
    ctx.reject_signal(req["id"], "go", req["message"], 418)


SERVICES = [
    greeter,
    counter,
    steps,
    flaky,
    failer,
    sleeper,
    internal,
    caller,
    awaiter,
    signup,
    cancellable,
    signals,
]

app = restate.app(services=SERVICES)
