"""``bench_services.py`` on our SDK: the same module with only the import changed.

``runtime_bench.py`` mounts it in process in a third runtime, ``ours+sdk``
(``restate-lambda dev benchmarks/bench_services_ours.py``): no HTTP hop to the handlers.

* ``Greeter.greet``  (Service)        ``"name"`` -> ``"Hello, name!"``
* ``Counter.add``    (VirtualObject)  ``delta`` -> new value (one state get + one set)
* ``Counter.get``    (shared)         current value (used to check the hot-key count)
* ``Steps.run``      (Service)        ``n`` -> list of ``n`` ``ctx.run`` results
"""

from __future__ import annotations

import restate_lambda as restate
from restate_lambda import Context, ObjectContext, ObjectSharedContext

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
