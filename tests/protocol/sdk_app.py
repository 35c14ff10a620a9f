"""A tiny app built with the official restate-sdk, driven in-process over ASGI."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}!"


@greeter.handler()
async def awakeable(ctx: restate.Context) -> str:
    awakeable_id, _ = ctx.awakeable(type_hint=str)
    return awakeable_id


@greeter.handler()
async def nap(ctx: restate.Context) -> str:
    await ctx.sleep(timedelta(seconds=5))
    return "rested"


@greeter.handler()
async def step(ctx: restate.Context) -> str:
    return await ctx.run_typed("step", lambda: "done")


@greeter.handler()
async def relay(ctx: restate.Context, name: str) -> str:
    return await ctx.service_call(greet, arg=name)


@greeter.handler()
async def boom(ctx: restate.Context) -> str:
    raise ValueError("kaput")


@greeter.handler()
async def refuse(ctx: restate.Context) -> str:
    raise restate.TerminalError("nope", status_code=418)


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, n: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + n
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    return email


@signup.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str:
    return "ok"


app = restate.app([greeter, counter, signup])


async def asgi_call(
    method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request to the SDK app, the whole body sent at once (more_body False)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 9080),
        "client": ("127.0.0.1", 50000),
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never a disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start["headers"]},
        out,
    )
