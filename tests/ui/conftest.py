"""Fixtures of the web UI's browser tests: headless Chromium (Debian's ``chromium`` package,
driven by Playwright) and ``restate-lambda dev`` with an admin token, serving
``tests/ui/shop_app.py`` (official SDK) and ``tests/ui/cart_app.py`` (ours).

Screenshots go to ``.tools/logs/ui/`` (kept as test artifacts). The tests skip, saying why,
when Chromium or Playwright is missing (``scripts/setup.sh`` installs both).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dev import ROOT, DevServer

TOKEN = "ui-test-token-5d1f"
SCREENSHOTS = ROOT / ".tools" / "logs" / "ui"
#: Flags for a sandbox-less container without network (see the project's test notes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """``RESTATE_LAMBDA_CHROMIUM``, else Debian's ``chromium`` on PATH or in /usr/bin."""
    for candidate in (
        os.environ.get("RESTATE_LAMBDA_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright's sync API)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "chromium is not installed: scripts/setup.sh installs it (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class UiRuntime:
    """The dev server and the invocations made before the tests."""

    server: DevServer
    ids: dict[str, str]

    @property
    def ui(self) -> str:
        """The UI's URL."""
        return f"{self.server.admin}/ui"

    def admin_get(self, path: str) -> Any:
        """GET on the admin API with the token."""
        r = httpx.get(
            self.server.admin + path, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        r.raise_for_status()
        return r.json()

    def invocation(self, inv_id: str) -> dict[str, Any]:
        """The admin API's row of ``inv_id``."""
        row: dict[str, Any] = self.admin_get(f"/invocations/{inv_id}")
        return row


def _send(ingress: str, path: str, body: str) -> str:
    r = httpx.post(
        f"{ingress}{path}/send",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    r.raise_for_status()
    inv_id: str = r.json()["invocationId"]
    return inv_id


def _call(ingress: str, path: str, body: str) -> None:
    r = httpx.post(
        f"{ingress}{path}", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    r.raise_for_status()


@pytest.fixture(scope="module")
def ui_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiRuntime]:
    """``restate-lambda dev`` with an admin token, and a few invocations: one failing in a
    ``ctx.run`` (official SDK), one failing in handler code (ours), a sleeping one, a
    succeeding one, and a cart with state."""
    data_dir = tmp_path_factory.mktemp("ui-dev")
    server = DevServer(
        data_dir,
        "tests/ui/shop_app.py",
        "tests/ui/cart_app.py",
        extra=("--admin-token", TOKEN),
    )
    try:
        server.wait_for("(ready)")
        server.drain()  # failing invocations log on every retry: never let the pipe fill up
        ingress = server.ingress
        ids = {
            "buy": _send(ingress, "/Shop/buy", '"o-1"'),
            "file": _send(ingress, "/Desk/file", '"taxes"'),
            "nap": _send(ingress, "/Desk/nap", "2"),
        }
        _call(ingress, "/Desk/greet", '"Ada"')
        _call(ingress, "/Cart/c1/add", '"apple"')
        runtime = UiRuntime(server, ids)
        deadline = time.monotonic() + 30
        while any(
            (runtime.invocation(ids[k]).get("retry_count") or 0) < 2 for k in ("buy", "file")
        ):
            assert time.monotonic() < deadline, server.output
            time.sleep(0.2)
        yield runtime
    finally:
        server.stop()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``.tools/logs/ui/NAME.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
