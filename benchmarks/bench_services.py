"""The handlers ``runtime_bench.py`` measures, written with the official ``restate-sdk`` (1.2).

Served in its own process by uvicorn over HTTP/1.1 (so the SDK answers discovery in
request-response mode, as on Lambda) as ``benchmarks.bench_services:app``. The same app is
registered with both runtimes.

* ``Greeter.greet``  (Service)        ``"name"`` -> ``"Hello, name!"``
* ``Counter.add``    (VirtualObject)  ``delta`` -> new value (one state get + one set)
* ``Counter.get``    (shared)         current value (used to check the hot-key count)
* ``Steps.run``      (Service)        ``n`` -> list of ``n`` ``ctx.run`` results
"""

from __future__ import annotations

import restate
from restate import Context, ObjectContext, ObjectSharedContext

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


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


steps = restate.Service("Steps")


async def square(i: int) -> int:
    return i * i


@steps.handler()
async def run(ctx: Context, n: int) -> list[int]:
    results: list[int] = []
    for i in range(n):
        results.append(await ctx.run_typed(f"step-{i}", square, restate.RunOptions(), i))
    return results


app = restate.app(services=[greeter, counter, steps])
