"""The web UI in headless Chromium against ``restate-lambda dev`` with an admin token.

Every page a user sees is opened here, and each leaves a screenshot in ``.tools/logs/ui/``:
the token prompt, invocations (filtered), a failed invocation with its stack trace, the same
after cancelling it, a sleeping invocation's timeline, pause/resume/kill/purge, services and
deployments, a key's state. No page may log a JavaScript error or a CSP violation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.conftest import TOKEN, UiRuntime, screenshot

pytestmark = pytest.mark.timeout(180)


class Console:
    """JavaScript errors and console errors of a page (but the 401 that asks for a token)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "status of 401" not in message.text:
            self.errors.append(message.text)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage: no token yet)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.console = Console(tab)
    try:
        yield tab
    finally:
        errors = tab.console.errors
        context.close()
        assert [] == errors


def wait_view(page: Any) -> None:
    """Wait until the view shown is the one the URL's fragment names, loaded."""
    page.wait_for_function(
        "() => { const v = document.getElementById('view');"
        " return v.dataset.route === location.hash.replace(/^#\\/?/, '')"
        " && !v.hasAttribute('aria-busy'); }"
    )


def login(page: Any, runtime: UiRuntime, fragment: str = "") -> None:
    """Open the UI (at ``#fragment``) and give the token."""
    page.goto(runtime.ui + fragment)
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#view:not([hidden]) h1")
    wait_view(page)


def refresh_until(page: Any, predicate: Any, what: str, timeout: float = 30) -> None:
    """Click Refresh until ``predicate(page)`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate(page):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        page.wait_for_timeout(300)
        page.click("a[data-reload]")
        wait_view(page)


def status_of(page: Any) -> str:
    """The status shown on an invocation's page."""
    return str(page.locator("dl.facts [data-status]").first.inner_text())


def test_the_token_is_asked_for_and_a_wrong_one_refused(page: Any, ui_runtime: UiRuntime) -> None:
    """Without a token the admin API answers 401 and the UI asks for one; a wrong token is
    refused with the admin API's reason; the right one shows the invocations; forgetting it
    asks again."""
    page.goto(ui_runtime.ui)
    page.wait_for_selector("#login:not([hidden])")
    assert "RESTATE_LAMBDA_ADMIN_TOKEN" in page.inner_text("#login")
    screenshot(page, "01-token-prompt")
    page.fill("#token", "not-the-token")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-reason:has-text('invalid bearer token')")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    wait_view(page)
    for inv_id in ui_runtime.ids.values():
        assert page.locator(f"tr[data-id='{inv_id}']").count() == 1
    screenshot(page, "02-invocations")
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")


def test_find_a_failed_invocation_read_its_stack_trace_and_cancel_it(
    page: Any, ui_runtime: UiRuntime
) -> None:
    """The issue's check: from the list of failures to the stack trace, then cancel."""
    buy = ui_runtime.ids["buy"]
    login(page, ui_runtime)
    page.click("[data-nav=failed]")
    wait_view(page)
    row = page.locator(f"tr[data-id='{buy}']")
    assert "backing-off" in row.inner_text() and "card declined for order o-1" in row.inner_text()
    assert page.locator(f"tr[data-id='{ui_runtime.ids['nap']}']").count() == 0
    screenshot(page, "03-failures")

    row.locator("a").first.click()
    wait_view(page)
    trace = page.inner_text("#stacktrace")
    assert trace.startswith("Traceback (most recent call last):"), trace
    assert "ValueError: card declined for order o-1 (42 EUR)" in trace
    failing = page.locator("tr.entry-failing")
    assert "charge" in failing.inner_text() and "failing" in failing.inner_text()
    assert '{"order":"o-1","amount":42}' in page.inner_text("table.timeline")  # the quote
    assert int(page.inner_text("#retry-count")) >= 2
    screenshot(page, "04-failed-invocation")

    page.click("button[data-action=cancel]")
    page.wait_for_selector("#flash.ok:has-text('cancel accepted')")
    refresh_until(page, lambda p: status_of(p) == "completed", "the cancellation")
    assert "[409] cancelled" in page.inner_text("dl.facts")
    assert page.locator("button[data-action=purge]").count() == 1
    assert page.locator("button[data-action=cancel]").count() == 0
    screenshot(page, "05-cancelled")
    assert "[409] cancelled" == ui_runtime.invocation(buy).get("completion_failure")


def test_filters_and_a_sleeping_invocation(page: Any, ui_runtime: UiRuntime) -> None:
    """Filtering by status and service narrows the list; a sleep shows its wake-up time."""
    nap = ui_runtime.ids["nap"]
    login(page, ui_runtime, "#/invocations")
    page.select_option("select[name=status]", "suspended")
    page.fill("input[name=service]", "Desk")
    page.select_option("select[name=since]", "1h")
    page.click("form.filters button[type=submit]")
    page.wait_for_function("location.hash.includes('status=suspended')")
    wait_view(page)
    page.wait_for_selector(f"tr[data-id='{nap}']")
    assert page.locator("table.invocations tbody tr").count() == 1
    assert "service=Desk" in page.evaluate("location.hash")
    screenshot(page, "06-filtered")

    page.fill("input[name=id]", nap)
    page.click("form.goto button[type=submit]")
    wait_view(page)
    sleep = page.locator("tr.entry", has_text="Sleep")
    assert "nap" in sleep.inner_text()
    assert re.search(r"wakes \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", sleep.inner_text())
    assert "suspended" == status_of(page)
    screenshot(page, "07-sleeping")


def test_pause_resume_kill_and_purge(page: Any, ui_runtime: UiRuntime) -> None:
    """Every action of the page goes through the admin API and the guard."""
    file = ui_runtime.ids["file"]
    page.on("dialog", lambda dialog: dialog.accept())  # kill and purge ask first
    login(page, ui_runtime, f"#/invocations/{file}")
    assert "RuntimeError: no drawer for taxes" in page.inner_text("#stacktrace")
    page.click("button[data-action=pause]")
    refresh_until(page, lambda p: status_of(p) == "paused", "the pause")
    screenshot(page, "08-paused")
    page.click("button[data-action=resume]")
    refresh_until(page, lambda p: status_of(p) != "paused", "the resume")
    page.click("button[data-action=kill]")
    refresh_until(page, lambda p: status_of(p) == "completed", "the kill")
    assert "[409] killed" in page.inner_text("dl.facts")
    screenshot(page, "09-killed")
    page.click("button[data-action=purge]")
    page.wait_for_selector("#flash.ok:has-text('purge accepted')")
    wait_view(page)
    assert page.locator(f"tr[data-id='{file}']").count() == 0
    screenshot(page, "10-purged")


def test_services_and_deployments(page: Any, ui_runtime: UiRuntime) -> None:
    """Both deployments and their services, with links to their invocations and state."""
    login(page, ui_runtime, "#/services")
    for name in ("Shop", "Desk", "Cart"):
        assert page.locator(f"tr[data-service='{name}']").count() == 1
    deployments = page.inner_text("table.deployments")
    assert "asgi://shop_app" in deployments and "asgi://cart_app" in deployments
    assert "restate-sdk-python" in deployments
    screenshot(page, "11-services")
    page.locator("tr[data-service='Cart'] a", has_text="state").click()
    wait_view(page)
    assert page.locator("table.keys a", has_text="c1").count() == 1


def test_state_of_a_key_is_shown_as_text(page: Any, ui_runtime: UiRuntime) -> None:
    """A key's state: values as text (HTML in them stays text), keys listed per service."""
    login(page, ui_runtime, "#/state")
    page.fill("input[name=service]", "Cart")
    page.click("form.filters button[type=submit]")
    wait_view(page)
    page.locator("table.keys a", has_text="c1").click()
    wait_view(page)
    assert '["apple"]' in page.inner_text("tr[data-key='items']")
    note = page.inner_text("tr[data-key='note']")
    assert "<b>not bold</b> & 'quoted'" in note
    assert page.locator("table.state b").count() == 0
    screenshot(page, "12-state")
