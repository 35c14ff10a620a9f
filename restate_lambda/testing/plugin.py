"""The pytest plugin of ``restate_lambda.testing`` (registered as the ``restate_lambda``
``pytest11`` entry point, so installing ``restate-lambda`` makes these fixtures available).

Fixtures:

* ``restate_harness``: a started :class:`~restate_lambda.testing.Harness` serving
  ``restate_app``, closed after the test;
* ``restate_app``: override it to return your ASGI app (or a list of apps); default none
  (then ``await restate_harness.mount(app)`` yourself);
* ``restate_backend``: ``"memory"`` (default) or ``"sqlite"``; override it, or run every test
  on both with ``@pytest.mark.parametrize("restate_backend", ["memory", "sqlite"])``.

Async tests and fixtures need ``pytest-asyncio`` (``pip install 'restate-lambda[testing]'``).
Loading this plugin imports nothing of the runtime: that happens when a fixture is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from restate_lambda.testing.in_process import Harness

_async_fixture: Any
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    HAVE_PYTEST_ASYNCIO = False
    _async_fixture = pytest.fixture
else:
    HAVE_PYTEST_ASYNCIO = True
    _async_fixture = pytest_asyncio.fixture


@pytest.fixture
def restate_backend() -> str:
    """Which store ``restate_harness`` uses: ``"memory"`` or ``"sqlite"``."""
    return "memory"


@pytest.fixture
def restate_app() -> Any:
    """The ASGI app(s) ``restate_harness`` serves; override it in your conftest."""
    return None


@_async_fixture  # type: ignore[untyped-decorator]
async def restate_harness(
    restate_backend: str, restate_app: Any, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A runtime in this process with a manual clock, serving ``restate_app``."""
    if not HAVE_PYTEST_ASYNCIO:  # pragma: no cover
        pytest.fail("restate_harness needs pytest-asyncio: pip install 'restate-lambda[testing]'")
    from restate_lambda.testing.in_process import Harness

    h = Harness(restate_backend, data_dir=tmp_path)  # type: ignore[arg-type]
    await h.start()
    try:
        apps = restate_app if isinstance(restate_app, list | tuple) else [restate_app]
        for app in apps:
            if app is not None:
                await h.mount(app)
        yield h
    finally:
        await h.close()
