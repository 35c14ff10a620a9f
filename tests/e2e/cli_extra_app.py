"""A second deployment for ``restate deployments register/remove`` (official restate-sdk).

Its one service, ``CliExtra``, exists nowhere else, so registering and force-removing this
deployment leaves the services the other end-to-end tests call untouched.
"""

from __future__ import annotations

import restate

extra = restate.Service("CliExtra")


@extra.handler()
async def ping(ctx: restate.Context, name: str) -> str:
    return f"pong {name}"


app = restate.app(services=[extra])
