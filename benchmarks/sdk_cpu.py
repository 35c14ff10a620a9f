"""Handler CPU per invocation: restate_lambda vs restate-sdk behind the same in-process driver.

Both ASGI apps get identical framed request bodies (HTTP/1.1 request-response, whole body in
one ``http.request``) and ``time.process_time`` is summed over many invocations. Cases:

* ``greet``: StartMessage + InputCommand, handler returns at once.
* ``5-step first``: a 5-step handler invoked with an empty journal (restate-sdk proposes the
  first step and suspends; restate_lambda runs all five with eager runs).
* ``5-step replay``: the full journal of five completed steps is replayed, then Output + End.
* ``5-step complete``: CPU to finish the 5-step handler in request-response mode: one
  invocation for restate_lambda, six for restate-sdk (journals with 0..5 completed steps).

Run: ``.venv/bin/python benchmarks/sdk_cpu.py [iterations]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import restate

import restate_lambda
from restate_lambda.protocol import encode, pb
from restate_lambda.protocol.ids import InvocationId


def build(module: Any) -> Any:
    """The same two handlers, defined with ``module``'s API."""
    svc = module.Service("Bench")

    @svc.handler()  # type: ignore[untyped-decorator]
    async def greet(ctx: Any, name: str) -> str:
        return f"Hello, {name}!"

    @svc.handler()  # type: ignore[untyped-decorator]
    async def steps(ctx: Any, n: int) -> list[str]:
        return [await ctx.run_typed(f"step-{i}", _step, module.RunOptions(), i) for i in range(n)]

    return module.app([svc])


async def _step(i: int) -> str:
    return f"s{i}"


def body(entries: list[Any], n_known: int) -> bytes:
    """StartMessage + entries."""
    iid = InvocationId(7, 99)
    start = pb().StartMessage(
        id=iid.to_bytes(), debug_id=str(iid), known_entries=n_known, random_seed=1
    )
    return encode(start) + b"".join(encode(e) for e in entries)


def requests() -> dict[str, tuple[str, bytes]]:
    """Case name -> (path, request body)."""
    P = pb()
    greet_in = P.InputCommandMessage(value=P.Value(content=b'"Ada"'))
    steps_in = P.InputCommandMessage(value=P.Value(content=b"5"))
    journal: list[Any] = [steps_in]
    for i in range(5):
        journal.append(P.RunCommandMessage(result_completion_id=i + 1, name=f"step-{i}"))
        journal.append(
            P.RunCompletionNotificationMessage(
                completion_id=i + 1, value=P.Value(content=f'"s{i}"'.encode())
            )
        )
    return {
        "greet": ("/invoke/Bench/greet", body([greet_in], 1)),
        **{
            f"5-step prefix {k}": ("/invoke/Bench/steps", body(journal[: 1 + 2 * k], 1 + 2 * k))
            for k in range(5)
        },
        "5-step first": ("/invoke/Bench/steps", body([steps_in], 1)),
        "5-step replay": ("/invoke/Bench/steps", body(journal, len(journal))),
    }


async def call(app: Any, path: str, data: bytes) -> bytes:
    """One in-process request-response exchange."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/vnd.restate.invocation.v6")],
        "query_string": b"",
        "root_path": "",
        "asgi": {"version": "3.0"},
    }
    state = {"sent": False}
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not state["sent"]:
            state["sent"] = True
            return {"type": "http.request", "body": data, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(out)


def measure(app: Any, path: str, data: bytes, iterations: int) -> float:
    """Mean CPU microseconds per invocation."""

    async def loop() -> float:
        for _ in range(20):
            await call(app, path, data)
        t0 = time.process_time()
        for _ in range(iterations):
            await call(app, path, data)
        return (time.process_time() - t0) / iterations * 1e6

    return asyncio.run(loop())


def main(iterations: int = 2000) -> None:
    """Print CPU per invocation for both SDKs and the ratio."""
    ours, theirs = build(restate_lambda), build(restate)
    print(f"{'case':18s} {'restate_lambda':>16s} {'restate-sdk':>14s} {'ours/theirs':>12s}")
    reqs = requests()
    results = {}
    for name, (path, data) in reqs.items():
        a = measure(ours, path, data, iterations)
        b = measure(theirs, path, data, iterations)
        results[name] = (a, b)
        if not name.startswith("5-step prefix"):
            print(f"{name:18s} {a:13.1f} us {b:11.1f} us {a / b:11.2f}x")
    # A 5-step handler to completion in request-response mode: restate_lambda needs one
    # invocation (eager runs); restate-sdk needs six, replaying 0..5 completed steps.
    theirs_total = (
        sum(results[f"5-step prefix {k}"][1] for k in range(5)) + results["5-step replay"][1]
    )
    ours_total = results["5-step first"][0]
    print(
        f"{'5-step complete':18s} {ours_total:13.1f} us {theirs_total:11.1f} us "
        f"{ours_total / theirs_total:11.2f}x   (1 invocation vs 6)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
