"""A Restate app that accepts only requests signed by given keys.

Served by hypercorn in a separate process as ``tests.support.identity_sdk_app:app``:

* ``E2E_IDENTITY_KEYS``: the accepted ``publickeyv1_…`` keys, comma-separated (required);
* ``E2E_IDENTITY_SDK``: ``restate`` (the official restate-sdk, default) or ``restate_lambda``
  (ours, the same code with another import).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

restate: Any = importlib.import_module(os.environ.get("E2E_IDENTITY_SDK", "restate"))

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Any, name: str) -> str:
    """Hello, with one journaled step (two round trips in request-response mode)."""
    punctuation = await ctx.run_typed("punctuation", lambda: "!")
    return f"Hello, {name}{punctuation}"


KEYS = [k for k in os.environ.get("E2E_IDENTITY_KEYS", "").split(",") if k]
if not KEYS:
    raise RuntimeError("E2E_IDENTITY_KEYS is not set: this app must require request identity")

app = restate.app([greeter], identity_keys=KEYS)
