"""Greeter: the smallest restate_lambda service, one handler with a journaled step.

Run it with ``restate-lambda dev examples/greeter.py`` and call
``curl localhost:8080/Greeter/greet --json '"Ada"'``.
"""

from __future__ import annotations

import restate_lambda as restate
from restate_lambda import Context

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    """Greet ``name``, with a greeting chosen once and journaled."""
    greeting = await ctx.run_typed("pick greeting", lambda: "Hello")
    return f"{greeting}, {name}!"


app = restate.app([greeter])
