"""Small HTTP helpers shared by the end-to-end scenarios."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.effects import poll

JSON = {"content-type": "application/json"}


async def call(
    client: httpx.AsyncClient,
    path: str,
    value: Any = None,
    *,
    no_body: bool = False,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> httpx.Response:
    """POST a handler call; JSON-encodes ``value`` unless ``no_body`` (handlers without input)."""
    if no_body:
        return await client.post(path, headers=headers, timeout=timeout)
    return await client.post(path, json=value, headers={**JSON, **(headers or {})}, timeout=timeout)


async def send(
    client: httpx.AsyncClient,
    path: str,
    value: Any = None,
    *,
    no_body: bool = False,
    headers: dict[str, str] | None = None,
) -> str:
    """POST ``{path}/send``, assert ``202 Accepted``, return the invocation id."""
    r = await call(client, f"{path}/send", value, no_body=no_body, headers=headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "Accepted", body
    assert body["invocationId"].startswith("inv_"), body
    assert r.headers["x-restate-id"] == body["invocationId"]
    return str(body["invocationId"])


async def counter_value(client: httpx.AsyncClient, key: str) -> int:
    r = await client.post(f"/Counter/{key}/get")
    assert r.status_code == 200, r.text
    return int(r.json())


async def wait_counter(
    client: httpx.AsyncClient, key: str, expected: int, timeout: float = 15
) -> None:
    await poll(
        lambda: counter_value(client, key),
        lambda v: v == expected,
        timeout=timeout,
        what=f"Counter/{key} == {expected}",
    )


def json_or_none(r: httpx.Response) -> Any:
    """The JSON body, or ``None`` for an empty body (the SDK serialises ``None`` as no bytes)."""
    return r.json() if r.content else None


def error_body(r: httpx.Response) -> dict[str, Any]:
    """The JSON error body; asserts the content type."""
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    return body


#: The message of the terminal error a cancelled handler fails with: the SDK raises it inside the
#: handler (Python: ``TerminalError("cancelled", 409)``; TypeScript: ``CancelledError``, whose
#: message is ``Cancelled``), and the handlers rethrow it, so the runtimes report the SDK's text.
CANCELLED_MESSAGE = {"python": "cancelled", "typescript": "Cancelled"}


def cancelled_body(sdk: str) -> dict[str, Any]:
    """The error body of an invocation cancelled under the SDK ``sdk`` (``Runtime.sdk``)."""
    return {"code": 409, "message": CANCELLED_MESSAGE[sdk], "source": "invocation"}
