"""OpenTelemetry traces: invocation and attempt spans, W3C trace context in and out."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from backends.memory import MemoryBackend
from infra.testing import TestEnvironment, test_environment
from invoker import records as rec
from invoker import tracing
from tests.invoker import sdk_app

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (otel extra)")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
JSON = {"content-type": "application/json"}


class HeaderRecorder:
    """An ASGI app in front of the SDK's: records the headers of every request it gets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.requests.append((scope["path"], headers))
        await self.app(scope, receive, send)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.configure(provider)
    try:
        yield memory
    finally:
        tracing.reset()


@pytest.fixture
async def traced(exporter: InMemorySpanExporter) -> AsyncIterator[tuple[TestEnvironment, Any]]:
    sdk_app.calls.clear()
    recorder = HeaderRecorder(sdk_app.app)
    async with test_environment(MemoryBackend()) as env:
        await env.mount("sdk", recorder)
        yield env, recorder


async def post(env: TestEnvironment, path: str, body: object, **headers: str) -> Any:
    return await env.ingress.post(
        path, content=json.dumps(body).encode(), headers={**JSON, **headers}
    )


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


async def test_call_yields_invocation_and_attempt_spans_in_the_callers_trace(
    traced: tuple[TestEnvironment, HeaderRecorder], exporter: InMemorySpanExporter
) -> None:
    env, recorder = traced
    r = await post(env, "/Greeter/greet", "ann", traceparent=TRACEPARENT)
    assert "Hello, ann!" == r.json()
    inv_id = r.headers["x-restate-id"]
    spans = exporter.get_finished_spans()
    [invocation] = by_name(spans, "invoke Greeter/greet")
    [attempt] = by_name(spans, "invocation-attempt Greeter/greet")
    assert TRACE_ID == hex_trace(invocation) == hex_trace(attempt)
    assert invocation.parent is not None and CLIENT_SPAN == f"{invocation.parent.span_id:016x}"
    assert attempt.parent is not None and invocation.context is not None
    assert attempt.parent.span_id == invocation.context.span_id
    expected = {
        "rpc.system": "restate",
        "rpc.service": "Greeter",
        "rpc.method": "greet",
        "restate.invocation.id": inv_id,
        "restate.invocation.target": "Greeter/greet",
    }
    assert expected.items() <= dict(invocation.attributes or {}).items()
    attrs = dict(attempt.attributes or {})
    assert expected.items() <= attrs.items()
    assert "completed" == attrs["restate_lambda.attempt.outcome"]
    assert 1 == attrs["restate_lambda.attempt"]
    # The deployment got the attempt span's traceparent.
    [(_path, headers)] = [(p, h) for p, h in recorder.requests if p.startswith("/invoke/")]
    assert attempt.context is not None
    assert f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01" == headers["traceparent"]


async def test_sleep_suspends_and_resumes_under_the_same_trace(
    traced: tuple[TestEnvironment, HeaderRecorder], exporter: InMemorySpanExporter
) -> None:
    env, recorder = traced
    r = await post(env, "/Steps/sleepy/send", 60, traceparent=TRACEPARENT)
    inv_id = r.json()["invocationId"]
    await env.settle()
    assert [] == by_name(exporter.get_finished_spans(), "invoke ")  # not completed yet
    await env.advance(timedelta(seconds=61))
    assert "woke" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()
    spans = exporter.get_finished_spans()
    attempts = by_name(spans, "invocation-attempt Steps/sleepy")
    [invocation] = by_name(spans, "invoke Steps/sleepy")
    outcomes = [dict(a.attributes or {})["restate_lambda.attempt.outcome"] for a in attempts]
    # The run's result needs a new attempt in request-response mode (continued at once); the
    # sleep suspends the next one; the wake-up resumes it in a third.
    assert ["continued", "suspended", "completed"] == outcomes
    assert {TRACE_ID} == {hex_trace(s) for s in [*attempts, invocation]}
    assert invocation.context is not None
    assert all(a.parent and a.parent.span_id == invocation.context.span_id for a in attempts)
    # Each request to the deployment carried its own attempt's span.
    sent = [h["traceparent"] for p, h in recorder.requests if p.startswith("/invoke/")]
    assert [f"00-{TRACE_ID}-{a.context.span_id:016x}-01" for a in attempts if a.context] == sent


async def test_attempts_after_a_crash_continue_the_trace(
    traced: tuple[TestEnvironment, HeaderRecorder], exporter: InMemorySpanExporter
) -> None:
    env, _recorder = traced
    r = await post(env, "/Steps/sleepy/send", 60, traceparent=TRACEPARENT)
    inv_id = r.json()["invocationId"]
    await env.settle()
    await env.restart()
    await env.mount("sdk", HeaderRecorder(sdk_app.app))
    await env.advance(timedelta(seconds=61))
    assert "woke" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()
    spans = exporter.get_finished_spans()
    assert 3 == len(by_name(spans, "invocation-attempt Steps/sleepy"))
    assert {TRACE_ID} == {hex_trace(s) for s in by_name(spans, "in")}


async def test_failed_attempt_and_terminal_failure(
    traced: tuple[TestEnvironment, HeaderRecorder], exporter: InMemorySpanExporter
) -> None:
    env, _recorder = traced
    r = await post(env, "/Steps/flaky/send", 1)
    inv_id = r.json()["invocationId"]
    await env.settle()
    await env.advance(timedelta(seconds=5))
    assert "ok" == (await env.ingress.get(f"/restate/invocation/{inv_id}/output")).json()
    attempts = by_name(exporter.get_finished_spans(), "invocation-attempt Steps/flaky")
    outcomes = [dict(a.attributes or {})["restate_lambda.attempt.outcome"] for a in attempts]
    assert ["continued", "failed", "completed"] == outcomes
    failed = attempts[1]
    assert "ERROR" == failed.status.status_code.name
    assert "transient failure" in (failed.status.description or "")
    assert 500 == dict(failed.attributes or {})["restate.error.code"]
    assert "OK" == attempts[2].status.status_code.name
    # No traceparent from the client: a trace of its own, all spans in it.
    assert 1 == len({hex_trace(s) for s in exporter.get_finished_spans()})

    exporter.clear()
    r = await env.ingress.post("/Steps/terminal")
    assert 418 == r.status_code, r.text
    [invocation] = by_name(exporter.get_finished_spans(), "invoke Steps/terminal")
    assert "ERROR" == invocation.status.status_code.name
    assert 418 == dict(invocation.attributes or {})["restate.error.code"]


async def test_a_call_joins_the_callers_trace(
    traced: tuple[TestEnvironment, HeaderRecorder], exporter: InMemorySpanExporter
) -> None:
    env, _recorder = traced
    r = await post(env, "/Steps/caller", "ann", traceparent=TRACEPARENT)
    assert "called: Hello, ann!" == r.json()
    spans = exporter.get_finished_spans()
    [callee] = by_name(spans, "invoke Greeter/greet")
    assert TRACE_ID == hex_trace(callee)
    caller_attempts = {
        s.context.span_id for s in by_name(spans, "invocation-attempt Steps/caller") if s.context
    }
    assert callee.parent is not None and callee.parent.span_id in caller_attempts


def test_records_without_a_trace_still_decode() -> None:
    """A record written before the field existed decodes with ``trace`` None; one with it
    round-trips."""

    class Old(msgspec.Struct, kw_only=True, omit_defaults=True):
        id: str
        service: str
        handler: str

    old = msgspec.msgpack.encode(Old(id="inv_1", service="S", handler="h"))
    assert rec.decode(old, rec.Invocation).trace is None
    inv = rec.Invocation(
        id="inv_1", service="S", handler="h", trace=rec.TraceContext(TRACE_ID, CLIENT_SPAN)
    )
    assert inv.trace == rec.decode(rec.encode(inv), rec.Invocation).trace


def test_trace_id_in_the_invocation_row() -> None:
    """``sys_invocation.trace_id`` (shown by ``restate invocations describe``)."""
    from invoker.introspection.rows import invocation_row

    inv = rec.Invocation(
        id="inv_1", service="S", handler="h", trace=rec.TraceContext(TRACE_ID, CLIENT_SPAN)
    )
    assert TRACE_ID == invocation_row(inv, {})["trace_id"]
    assert (
        invocation_row(rec.Invocation(id="inv_1", service="S", handler="h"), {}).get("trace_id")
        is None
    )


def test_environment_switch() -> None:
    assert not tracing.enabled_by_env({})
    assert tracing.enabled_by_env({"RESTATE_LAMBDA_TRACING": "1"})
    assert tracing.enabled_by_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"})
    assert tracing.enabled_by_env({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled_by_env({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled_by_env(
        {"OTEL_TRACES_EXPORTER": "console", "RESTATE_LAMBDA_TRACING": "0"}
    )
    assert not tracing.enabled_by_env(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    )


_NO_OTEL = """
import asyncio, sys
from infra.testing import test_environment
from tests.invoker import sdk_app

async def main():
    async with test_environment() as env:
        await env.mount("sdk", sdk_app.app)
        r = await env.ingress.post("/Greeter/greet", json="ann",
                                   headers={"traceparent": "%s"})
        assert r.json() == "Hello, ann!", r.text
asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(",".join(loaded))
"""


def test_tracing_off_imports_no_opentelemetry() -> None:
    """With no tracing variable set, running an invocation loads no OpenTelemetry module."""
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith("OTEL_") and k != "RESTATE_LAMBDA_TRACING"
    }
    out = subprocess.run(
        [sys.executable, "-c", _NO_OTEL % TRACEPARENT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "" == out.stdout.strip(), out.stdout


def test_provider_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard variables pick the exporter; ``configure_from_env`` defers to an explicit
    configuration and stays off when nothing asks for traces."""
    from invoker.tracing_otel import env_provider

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "x")  # read by the SDK itself
    console = env_provider()
    assert isinstance(console, TracerProvider)
    assert "x" == console.resource.attributes["service.name"]
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    unnamed = env_provider({"OTEL_TRACES_EXPORTER": "none"})
    assert "restate-lambda" == unnamed.resource.attributes["service.name"]
    tracing.reset()
    try:
        assert tracing.configure_from_env({}) is None
        assert tracing.current() is None
        asked = {"RESTATE_LAMBDA_TRACING": "1", "OTEL_TRACES_EXPORTER": "none"}
        active = tracing.configure_from_env(asked)
        assert active is not None and active is tracing.current()
        tracing.configure(enabled=False)
        assert tracing.configure_from_env(asked) is None
    finally:
        tracing.reset()
