"""``GET /openapi.json``: a valid OpenAPI 3.1 document that matches the route tables."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate

from ingress.admin_app import _AdminEndpoints
from ingress.errors import IngressHttpError
from ingress.paths import (
    AwakeableRoute,
    CheckpointRoute,
    HealthRoute,
    InvokeRoute,
    JsonTargetRoute,
    LegacyInvokeRoute,
    ReadRoute,
    parse_route,
)
from tests.ingress.fakes import FakeEngine

_SAMPLES = {
    "service": "Greeter",
    "handler": "greet",
    "key": "k1",
    "invocationId": "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz",
    "idempotencyKey": "idem",
    "workflow": "Wf",
    "workflowKey": "w1",
    "awakeableId": "sign_1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
}


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def test_served_and_valid(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    apis = {item["x-api"] for item in document["paths"].values()}
    assert apis == {"ingress", "admin"}
    ingress_urls = {
        item["servers"][0]["url"]
        for item in document["paths"].values()
        if item["x-api"] == "ingress"
    }
    assert ingress_urls == {"http://127.0.0.1:18080"}
    assert (await admin.get("/v4/openapi.json")).json() == document


async def test_every_admin_route_described(admin: httpx.AsyncClient) -> None:
    document = (await admin.get("/openapi.json")).json()
    described = {
        (_normalise(path), method.upper())
        for path, item in document["paths"].items()
        if item["x-api"] == "admin"
        for method in ("get", "post", "put", "patch", "delete")
        if method in item
    }
    served = {
        (_normalise(route.path), method)  # type: ignore[attr-defined]
        for route in _AdminEndpoints(FakeEngine(), "http://i/").routes()
        for method in route.methods or ()  # type: ignore[attr-defined]
        if method != "HEAD"
    }
    assert served == described


async def test_every_ingress_path_is_a_route(admin: httpx.AsyncClient) -> None:
    """Each documented ingress path, filled with sample values, parses to the route it names."""
    document = (await admin.get("/openapi.json")).json()
    kinds: set[str] = set()
    for path, item in document["paths"].items():
        if item["x-api"] != "ingress":
            continue
        concrete = path.format(**_SAMPLES)
        for method in ("get", "post"):
            if method not in item:
                continue
            try:
                route = parse_route(concrete.strip("/").split("/"), method.upper())
            except IngressHttpError as exc:  # pragma: no cover - the assertion explains
                pytest.fail(f"{method} {path} -> {exc.status} {exc.message}")
            kinds.add(type(route).__name__)
            if path.startswith("/{"):
                assert isinstance(route, LegacyInvokeRoute), path
    expected = {
        HealthRoute,
        InvokeRoute,
        LegacyInvokeRoute,
        ReadRoute,
        JsonTargetRoute,
        AwakeableRoute,
        CheckpointRoute,
    }
    assert kinds == {k.__name__ for k in expected}
