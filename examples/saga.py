"""Saga: book flight, hotel and car; when a step fails terminally, undo the earlier ones.

``POST /Trip/book`` with ``{"trip": "t1", "fail_at": "car"}`` returns 409 and the list of
compensations that ran; without ``fail_at`` every booking succeeds.
"""

from __future__ import annotations

from typing import Any

import restate_lambda as restate
from restate_lambda import Context, TerminalError

trip = restate.Service("Trip")


def _book(what: str, fail_at: str | None) -> str:
    if what == fail_at:
        raise TerminalError(f"{what} is sold out", status_code=409)
    return f"{what}-booking"


def _cancel(what: str) -> str:
    return f"{what}-cancelled"


@trip.handler()
async def book(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Book every leg or none (compensating the booked ones, newest first)."""
    fail_at = req.get("fail_at")
    compensations: list[str] = []
    done: list[str] = []
    try:
        for leg in ("flight", "hotel", "car"):
            compensations.append(leg)
            done.append(
                await ctx.run_typed(f"book {leg}", _book, restate.RunOptions(), leg, fail_at)
            )
    except TerminalError as e:
        undone = []
        for leg in reversed(compensations):
            undone.append(await ctx.run_typed(f"cancel {leg}", _cancel, restate.RunOptions(), leg))
        raise TerminalError(f"{e.message}; compensated: {', '.join(undone)}", 409) from e
    return {"trip": req.get("trip"), "bookings": done}


app = restate.app([trip])
