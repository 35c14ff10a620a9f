"""Shared pytest configuration: end-to-end fixtures come from ``tests.support.fixtures``."""

from tests.support.fixtures import (
    admin,
    e2e_workdir,
    effects,
    ingress,
    runtime,
    sdk_app,
    tag,
)

__all__ = ["admin", "e2e_workdir", "effects", "ingress", "runtime", "sdk_app", "tag"]
