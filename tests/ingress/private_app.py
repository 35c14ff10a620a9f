"""Handlers (restate_lambda SDK) for the privacy and fuzz tests, served in process."""

from __future__ import annotations

import json
from typing import Any

import restate_lambda as restate
from restate_lambda import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
)


def _text(value: Any) -> str:
    """``value`` if it is a string; a terminal 400 otherwise (fuzzed input is never retried)."""
    if not isinstance(value, str):
        raise TerminalError("expected a JSON string", status_code=400)
    return value


# --------------------------------------------------------------------------- private service
internal = restate.Service("Internal", ingress_private=True)


@internal.handler()
async def secret(ctx: Context, name: Any) -> str:
    """Only callable from other handlers."""
    return f"secret for {_text(name)}"


# --------------------------------------------------------------------------- a public caller
caller = restate.Service("Caller")


@caller.handler()
async def send_private(ctx: Context, name: Any) -> str:
    """Sends to the private service and returns the child's invocation id (a public value)."""
    handle = ctx.generic_send("Internal", "secret", json.dumps(_text(name)).encode())
    return await handle.invocation_id()


@caller.handler()
async def start_private_workflow(ctx: Context, key: Any) -> str:
    """Starts the private workflow ``Hidden/{key}``."""
    handle = ctx.generic_send("Hidden", "run", b'"go"', key=_text(key))
    return await handle.invocation_id()


# --------------------------------------------------------------------------- a private handler
vault = restate.VirtualObject("Vault")


@vault.handler(ingress_private=True)
async def wait(ctx: ObjectContext) -> str:
    """Private: creates an awakeable, publishes its id in state and awaits it."""
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awakeable_id", awakeable_id)
    return f"vault got {await fut}"


@vault.handler()
async def open_wait(ctx: ObjectContext) -> str:
    """Public: starts the private ``wait`` of this key (sends it) and returns its id."""
    handle = ctx.generic_send("Vault", "wait", b"", key=ctx.key())
    return await handle.invocation_id()


@vault.handler(kind="shared")
async def awakeable_id(ctx: ObjectSharedContext) -> str | None:
    """Public: the awakeable id the private handler published (a leak on purpose)."""
    return await ctx.get("awakeable_id", type_hint=str)


# --------------------------------------------------------------------------- a public awaiter
awaiter = restate.VirtualObject("Awaiter")


@awaiter.handler()
async def wait_public(ctx: ObjectContext) -> str:
    """Public: creates an awakeable, publishes its id and awaits it."""
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awakeable_id", awakeable_id)
    return f"got {await fut}"


@awaiter.handler(kind="shared")
async def published(ctx: ObjectSharedContext) -> str | None:
    """The published awakeable id."""
    return await ctx.get("awakeable_id", type_hint=str)


# --------------------------------------------------------------------------- counter, greeter
counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: Any) -> int:
    """Add ``delta`` (an integer) to this key's count."""
    if not isinstance(delta, int) or isinstance(delta, bool) or abs(delta) > 2**53:
        raise TerminalError("expected a JSON integer", status_code=400)
    value = ((await ctx.get("count", type_hint=int)) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    """This key's count."""
    return (await ctx.get("count", type_hint=int)) or 0


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: Any) -> str:
    """Hello."""
    return f"Hello, {_text(name)}!"


@greeter.handler()
async def echo(ctx: Context, value: Any) -> Any:
    """Any JSON value back."""
    return value


# --------------------------------------------------------------------------- private workflow
hidden = restate.Workflow("Hidden", ingress_private=True)


@hidden.main()
async def run(ctx: WorkflowContext, what: Any) -> str:
    """A private workflow's run."""
    return f"hidden {_text(what)}"


app = restate.app([internal, caller, vault, awaiter, counter, greeter, hidden])
