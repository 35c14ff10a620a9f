"""Shared pytest configuration: end-to-end fixtures come from ``tests.support.fixtures``."""

import logging
from collections.abc import Iterator

import pytest

from tests.support.fixtures import (
    admin,
    e2e_workdir,
    effects,
    ingress,
    runtime,
    sdk_app,
    tag,
    ts_app,
)

__all__ = ["admin", "e2e_workdir", "effects", "ingress", "runtime", "sdk_app", "tag", "ts_app"]


def pytest_configure(config: pytest.Config) -> None:
    """Load our pytest plugin when the installed distribution predates its entry point (an
    editable install made before ``pytest11`` was declared): users get it from the entry point."""
    if not config.pluginmanager.has_plugin("restate_lambda"):
        import restate_lambda.testing.plugin as plugin

        config.pluginmanager.register(plugin, "restate_lambda")


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Undo what a test did to the root logger (a CLI run in process configures it, with a
    handler on the stderr of the moment): later tests would otherwise get its lines."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
