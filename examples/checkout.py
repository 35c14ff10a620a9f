"""Checkout: a workflow that waits for a payment (awakeable) and a shipping approval (promise).

1. ``POST /Checkout/{order}/run`` with ``{"item": "book", "price": 12}`` starts the workflow;
   it records the payment request id in state ``payment_id`` and waits.
2. Resolve the payment: ``POST /restate/awakeables/{payment_id}/resolve`` with ``"paid"``.
3. Approve shipping: ``POST /Checkout/{order}/approve`` with ``"ok"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import restate_lambda as restate
from restate_lambda import WorkflowContext, WorkflowSharedContext

checkout = restate.Workflow("Checkout")


@dataclass
class Order:
    """What is being bought."""

    item: str
    price: int


@checkout.main()
async def run(ctx: WorkflowContext, order: Order) -> str:
    """Reserve, wait for payment and approval, then ship."""
    ctx.set("status", "reserving")
    reservation = await ctx.run_typed("reserve", lambda: f"res-{order.item}")
    payment_id, payment = ctx.awakeable(type_hint=str)
    ctx.set("payment_id", payment_id)
    ctx.set("status", "awaiting payment")
    paid = await payment
    ctx.set("status", "awaiting approval")
    approval = await ctx.promise("approval", type_hint=str).value()
    ctx.set("status", "shipped")
    return f"{order.item} ({reservation}) {paid}, approval {approval}, shipped"


@checkout.handler()
async def approve(ctx: WorkflowSharedContext, note: str) -> None:
    """Approve shipping."""
    await ctx.promise("approval", type_hint=str).resolve(note)


@checkout.handler()
async def payment_id(ctx: WorkflowSharedContext) -> str | None:
    """The awakeable id the payment provider must resolve."""
    return await ctx.get("payment_id", type_hint=str)


@checkout.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    """Where the checkout is."""
    return await ctx.get("status", type_hint=str)


app = restate.app([checkout])
