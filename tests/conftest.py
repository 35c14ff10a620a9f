"""Shared pytest configuration: end-to-end fixtures come from ``tests.support.fixtures``."""

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
