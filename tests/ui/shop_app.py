"""A handler written with the official ``restate`` SDK that fails on every attempt: a plain
exception (retryable) inside a ``ctx.run``, so the SDK sends its stack trace."""

from __future__ import annotations

from datetime import timedelta

import restate

#: Retries every 200 ms to 1 s (not Restate's 10 s), so a test sees them and a cancel lands soon.
shop = restate.Service(
    "Shop",
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=200), max_interval=timedelta(seconds=1)
    ),
)


def charge_card(order: str, amount: int) -> str:
    """The payment provider declines every card."""
    raise ValueError(f"card declined for order {order} ({amount} EUR)")


@shop.handler()
async def buy(ctx: restate.Context, order: str) -> str:
    """Quotes (journaled), then charges: the charge fails on every attempt."""
    quote = await ctx.run_typed("quote", lambda: {"order": order, "amount": 42})
    return await ctx.run_typed("charge", lambda: charge_card(order, quote["amount"]))


app = restate.app([shop])
