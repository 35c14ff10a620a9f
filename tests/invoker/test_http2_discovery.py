"""Registering an endpoint over HTTP/2 cleartext (the default) when it speaks only HTTP/1.1:
a clear 400 naming the way out, never a 500; with ``use_http_11`` it registers."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from infra.testing import test_environment as make_environment
from tests.e2e.cli_extra_app import app as extra_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_http1_only_server_gets_a_clear_error_then_registers_with_use_http_11() -> None:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(extra_app, host="127.0.0.1", port=port, http="h11", log_level="warning")
    )
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to await)
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        async with make_environment() as env:
            r = await env.admin.post("/deployments", json={"uri": url})
            assert r.status_code == 400, r.text
            message = r.json()["message"]
            assert f"cannot reach deployment {url}" in message
            assert "use_http_11" in message and "--use-http1.1" in message
            r = await env.admin.post("/deployments", json={"uri": url, "use_http_11": True})
            assert r.status_code == 201, r.text
            r = await env.ingress.post("/CliExtra/ping", json="h1")
            assert r.status_code == 200 and r.json() == "pong h1", r.text
    finally:
        server.should_exit = True
        await serving
