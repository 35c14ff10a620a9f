"""The web UI's views over a whole runtime in process (``restate_lambda.testing.Harness``):
what each page shows, with and without the SQL engine; escaping; the admin guard (token,
public shell); refused filters as JSON ``{code, message}``.

The pages in a real browser: ``tests/ui/test_ui_browser.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

import restate_lambda as restate
from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity
from ingress.ui.data import UiData
from ingress.ui.views import PUBLIC_PATHS, UiEndpoints
from restate_lambda.testing import Harness
from tests.ui import cart_app, shop_app

evil = restate.VirtualObject("Evil<script>")


@evil.handler()
async def put(ctx: restate.ObjectContext, value: str) -> str:
    """Stores ``value`` under a key that is HTML too."""
    ctx.set("<img src=x onerror=alert(1)>", value)
    return value


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    """A runtime with a failing, a sleeping, a stateful and a succeeding invocation."""
    async with Harness() as harness:
        await harness.mount(shop_app.app)
        await harness.mount(cart_app.app)
        await harness.mount(restate.app([evil]))
        yield harness


async def _scenario(h: Harness) -> dict[str, str]:
    ids = {
        "buy": await h.send("Shop", "buy", "o-1"),
        "file": await h.send("Desk", "file", "taxes"),
        "nap": await h.send("Desk", "nap", 2),
    }
    await h.call("Cart", "add", "apple", key="c1")
    await h.call("Desk", "greet", "Ada")
    await h.call("Evil<script>", "put", "</pre><script>alert(2)</script>", key="k<b>")
    await h.settle()
    await h.advance(timedelta(seconds=2))  # a retry or two
    return ids


def _ui(h: Harness, use_sql: bool) -> httpx.AsyncClient:
    """A client of the UI's routes reading with SQL or without it (row builders)."""
    from starlette.applications import Starlette

    endpoints = UiEndpoints(h.engine, UiData(h.engine, use_sql=use_sql))
    transport = httpx.ASGITransport(app=Starlette(routes=endpoints.routes()))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9070")


@pytest.mark.parametrize("use_sql", [True, False], ids=["sql", "no-sql"])
async def test_pages_show_invocations_timeline_state_and_services(
    h: Harness, use_sql: bool
) -> None:
    """Each view, read through SQL and without it, shows what the runtime holds."""
    ids = await _scenario(h)
    async with _ui(h, use_sql) as ui:
        listing = (await ui.get("/ui/views/invocations")).text
        for inv_id in ids.values():
            assert inv_id in listing
        assert "backing-off" in listing and "card declined for order o-1" in listing

        failed = (await ui.get("/ui/views/invocations", params={"status": "failed"})).text
        assert ids["buy"] in failed and ids["file"] in failed and ids["nap"] not in failed
        desk = (await ui.get("/ui/views/invocations", params={"service": "Desk"})).text
        assert ids["nap"] in desk and ids["buy"] not in desk
        suspended = (await ui.get("/ui/views/invocations?status=suspended&since=1h")).text
        assert ids["nap"] in suspended and ids["file"] not in suspended
        old = (await ui.get("/ui/views/invocations?to=2000-01-01")).text
        assert "No invocations match" in old
        quoted = await ui.get("/ui/views/invocations", params={"key": "o'brien'; --"})
        assert 200 == quoted.status_code and "No invocations match" in quoted.text
        assert ("SELECT" in listing) is use_sql  # the SQL behind the page, when there is SQL

        page = (await ui.get(f"/ui/views/invocations/{ids['buy']}")).text
        assert "Last attempt failed" in page
        trace = re.search(r'<pre class="trace" id="stacktrace">(.*?)</pre>', page, re.S)
        assert trace and "ValueError: card declined for order o-1 (42 EUR)" in trace.group(1)
        assert "quote" in page and "charge" in page
        assert "{&#34;order&#34;:&#34;o-1&#34;,&#34;amount&#34;:42}" in page  # the run's value
        for action in ("cancel", "kill", "pause", "resume"):
            assert f'data-action="{action}"' in page
        assert 'data-action="purge"' not in page

        nap = (await ui.get(f"/ui/views/invocations/{ids['nap']}")).text
        assert "Sleep" in nap and "wakes" in nap and "suspended" in nap

        state = (await ui.get("/ui/views/state", params={"service": "Cart", "key": "c1"})).text
        assert "items" in state and "[&#34;apple&#34;]" in state
        assert "&lt;b&gt;not bold&lt;/b&gt; &amp; &#39;quoted&#39;" in state
        keys = (await ui.get("/ui/views/state", params={"service": "Cart"})).text
        assert "c1" in keys

        services = (await ui.get("/ui/views/services")).text
        for name in ("Shop", "Cart", "Desk", "asgi://", "restate-sdk-python"):
            assert name in services


async def test_user_data_is_escaped(h: Harness) -> None:
    """Service names, keys, state keys and values render as text, never as markup."""
    await _scenario(h)
    async with _ui(h, True) as ui:
        pages = [
            (await ui.get("/ui/views/state", params={"service": "Evil<script>"})).text,
            (
                await ui.get("/ui/views/state", params={"service": "Evil<script>", "key": "k<b>"})
            ).text,
            (await ui.get("/ui/views/invocations")).text,
            (await ui.get("/ui/views/services")).text,
        ]
    for page in pages:
        assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "Evil&lt;script&gt;" in pages[0] and "k&lt;b&gt;" in pages[1]
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in pages[1]


async def test_completed_invocations_offer_purge_and_show_their_result(h: Harness) -> None:
    """A cancelled invocation is completed with its failure; purge is its only action."""
    ids = await _scenario(h)
    await h.manage(ids["nap"], "cancel")
    await h.settle()
    async with _ui(h, True) as ui:
        page = (await ui.get(f"/ui/views/invocations/{ids['nap']}")).text
        completed = (await ui.get("/ui/views/invocations?status=completed")).text
    assert "[409] cancelled" in page and 'data-action="purge"' in page
    assert 'data-action="cancel"' not in page
    assert ids["nap"] in completed


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "unknown status filter"),
        ("since=3w", "unknown 'since'"),
        ("limit=0", "'limit' must be a number"),
        ("from=yesterday", "is not an ISO 8601 time"),
    ],
)
async def test_bad_filters_are_json_errors(h: Harness, query: str, message: str) -> None:
    """A filter the UI cannot use is a 400 ``{code, message}``."""
    async with _ui(h, True) as ui:
        r = await ui.get(f"/ui/views/invocations?{query}")
    assert 400 == r.status_code
    body = r.json()
    assert 400 == body["code"] and message in body["message"]


async def test_unknown_and_malformed_invocations(h: Harness) -> None:
    """A malformed id is a 400, an unknown one a 404, both JSON."""
    async with _ui(h, True) as ui:
        bad = await ui.get("/ui/views/invocations/inv_nope")
        missing = await ui.get("/ui/views/invocations/inv_1aMs1BfKRPyq4VATes9af5aI58sVbYB7Xz")
    assert 400 == bad.status_code and "not an invocation id" in bad.json()["message"]
    assert 404 == missing.status_code and "no invocation" in missing.json()["message"]


@pytest.fixture
async def guarded(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """The admin app with a token, as ``restate-lambda dev --admin-token`` serves it."""
    app = create_admin_app(h.engine, security=AdminSecurity.for_bind("127.0.0.1", "s3cret"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9070") as c:
        yield c


async def test_the_shell_is_public_and_the_views_need_the_token(
    guarded: httpx.AsyncClient,
) -> None:
    """A browser loads the shell and its assets without the token (they hold no data); every
    view and action needs it."""
    for path in sorted(PUBLIC_PATHS):
        r = await guarded.get(path)
        assert 200 == r.status_code, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "nosniff" == r.headers["x-content-type-options"]
        assert "DENY" == r.headers["x-frame-options"]
    shell = (await guarded.get("/ui")).text
    assert "/ui/static/ui.js" in shell and "inv_" not in shell
    for path in ("/ui/views/invocations", "/ui/views/services", "/ui/views/state"):
        assert 401 == (await guarded.get(path)).status_code
    auth = {"authorization": "Bearer s3cret"}
    r = await guarded.get("/ui/views/services", headers=auth)
    assert 200 == r.status_code and r.headers["content-type"].startswith("text/html")
    assert 404 == (await guarded.get("/ui/static/secret.py", headers=auth)).status_code
    assert 401 == (await guarded.get("/ui/static/../views/services")).status_code


async def test_actions_from_the_page_pass_the_guard_and_cross_site_ones_do_not(
    h: Harness, guarded: httpx.AsyncClient
) -> None:
    """The UI's PATCH (same origin, bearer token, no body) passes; one from another site is
    refused before it reaches the engine."""
    ids = await _scenario(h)
    url = f"/invocations/{ids['file']}/pause"
    same = {"authorization": "Bearer s3cret", "origin": "http://127.0.0.1:9070"}
    other = {**same, "origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    assert 403 == (await guarded.patch(url, headers=other)).status_code
    assert (
        200
        == (await guarded.patch(url, headers={**same, "sec-fetch-site": "same-origin"})).status_code
    )
    assert "paused" == await h.status(ids["file"])
