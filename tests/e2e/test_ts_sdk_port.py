"""The TypeScript port of the handlers (``tests/support/ts_services.cjs``) declares what the
Python ones (``tests/support/sdk_services.py``) do: same services, kinds, handlers, handler kinds,
input and output declarations, ingress visibility. The e2e scenarios then run against both.

Ignored: JSON schemas and documentation (the Python SDK derives them from type hints and
docstrings; the port declares none) and the protocol mode (``restate.serve()`` is h2c only, so
BIDI_STREAM; the Python app answers discovery over HTTP/1.1, so REQUEST_RESPONSE).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.runtimes import MANIFEST_V4, SdkApp, TsSdkApp, discover_h2c

_IGNORED = {"jsonSchema", "documentation"}


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if k not in _IGNORED}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _services(manifest: dict[str, Any]) -> dict[str, Any]:
    services = _normalised(manifest["services"])
    for service in services:
        service["handlers"] = {h["name"]: h for h in service["handlers"]}
    return {s["name"]: s for s in services}


def test_ts_port_declares_the_python_handlers(sdk_app: SdkApp, ts_app: TsSdkApp) -> None:
    python = httpx.get(f"{sdk_app.url}/discover", headers={"accept": MANIFEST_V4}, timeout=10)
    assert python.status_code == 200, python.text
    typescript = discover_h2c(ts_app.url)
    assert typescript["protocolMode"] == "BIDI_STREAM"
    assert _services(typescript) == _services(python.json())
