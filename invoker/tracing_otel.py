"""The OpenTelemetry side of :mod:`invoker.tracing` (loaded only when tracing is on).

Spans, with the attribute names restate-server gives its invocation spans (``rpc.system`` =
``restate``, ``rpc.service``, ``rpc.method``, ``restate.invocation.id``,
``restate.invocation.target``; on errors ``restate.error.code`` and
``restate.invocation.error.stacktrace``):

* ``invoke <Service>/<handler>``, one per invocation, from its submission (the record's
  ``created_ms``) to its completion (``completed_ms``), child of the submitter's span (the
  ``traceparent`` of the ingress request, or of the calling attempt for service-to-service
  calls). An invocation outlives processes, so this span is emitted once, by the engine that
  commits the completion, with the span id chosen at submission and stored in the record
  (:class:`invoker.records.TraceContext`) -- as restate-server does with the span context it
  keeps in the invocation's journal metadata. Until then the trace shows its attempts under a
  parent that has not arrived yet.
* ``invocation-attempt <Service>/<handler>`` (kind CLIENT), one per attempt, child of the
  invocation span, whichever engine runs it (after a crash, on another engine). Its
  ``traceparent`` (and the ``tracestate``) go to the deployment in the request's headers, where
  the SDK (``restate.ext.tracing`` in the Python SDK) continues the trace. Besides Restate's
  attributes: ``restate_lambda.attempt`` (the attempt's number) and
  ``restate_lambda.attempt.outcome``: ``completed``, ``suspended``, ``continued`` (the handler
  goes on in a next attempt at once), ``failed`` (status ERROR, with the error), ``paused``.

Timestamps: attempt spans use the wall clock; the invocation span uses the engine clock's
milliseconds stored in the record.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from invoker import records as rec

log = logging.getLogger("restate_lambda.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = ("traceparent", "tracestate")
#: (trace id, span id) the next span must take: the invocation span's, chosen at submission.
_PRESET: ContextVar[tuple[int, int] | None] = ContextVar("restate_lambda_preset_ids", default=None)

_OUTCOMES = {
    rec.Status.COMPLETED: "completed",
    rec.Status.SUSPENDED: "suspended",
    rec.Status.RUNNING: "continued",
    rec.Status.BACKING_OFF: "failed",
    rec.Status.PAUSED: "paused",
}


class Attempting(Protocol):
    """What an attempt span needs of the claimed invocation (:class:`invoker.ports.Claimed`),
    named structurally so that tracing does not import the engine's ports."""

    inv: rec.Invocation


class _PresetIds:
    """Wraps a tracer's id generator: ids from :data:`_PRESET` when set (invocation spans)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def generate_span_id(self) -> int:
        preset = _PRESET.get()
        return preset[1] if preset is not None else int(self._inner.generate_span_id())

    def generate_trace_id(self) -> int:
        preset = _PRESET.get()
        return preset[0] if preset is not None else int(self._inner.generate_trace_id())

    def __getattr__(self, name: str) -> Any:
        # Whatever else the SDK asks of its id generator (``is_trace_id_random``): ids chosen
        # at submission are random too.
        return getattr(self._inner, name)


class Tracing:
    """Spans of invocations and attempts on ``provider`` (see the module docstring)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("restate_lambda")
        # The SDK's tracer draws ids from ``id_generator``: the invocation span, emitted at the
        # end, takes the ids its attempts already used as their parent.
        inner = getattr(self._tracer, "id_generator", None)
        self.preset_ids = inner is not None
        if inner is not None:
            self._tracer.id_generator = _PresetIds(inner)

    # -- submission ------------------------------------------------------------------------

    def new_context(self, headers: list[tuple[str, str]]) -> rec.TraceContext:
        """The trace context of a new invocation submitted with ``headers``: in the trace of
        their ``traceparent`` (child of its span) if valid, else in a new trace."""
        carrier = {k.lower(): v for k, v in headers if k.lower() in _TRACE_HEADERS}
        span_id = f"{random.getrandbits(64) or 1:016x}"
        if carrier:
            parent = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
            if parent.is_valid:
                return rec.TraceContext(
                    trace_id=f"{parent.trace_id:032x}",
                    span_id=span_id,
                    flags=int(parent.trace_flags),
                    parent_span_id=f"{parent.span_id:016x}",
                    state=parent.trace_state.to_header() or None,
                )
        return rec.TraceContext(trace_id=f"{random.getrandbits(128) or 1:032x}", span_id=span_id)

    # -- attempts --------------------------------------------------------------------------

    @contextmanager
    def attempt(self, st: Attempting) -> Iterator[Span]:
        """A span around one attempt of ``st``, current while the attempt runs (so the
        request's headers and the calls it makes carry it); its outcome is read from the
        record once the attempt settled."""
        inv = st.inv
        tc = inv.trace
        parent = (
            _context_of(tc.trace_id, tc.span_id, tc) if tc is not None else otel_context.Context()
        )
        attributes: dict[str, Any] = {**_attributes(inv), "restate_lambda.attempt": inv.attempts}
        if inv.deployment_id is not None:
            attributes["restate.deployment.id"] = inv.deployment_id
        span = self._tracer.start_span(
            f"invocation-attempt {inv.service}/{inv.handler}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        else:
            _outcome(span, st.inv)
        finally:
            otel_context.detach(token)
            span.end()

    def inject(self, headers: dict[str, str]) -> None:
        """Add the current attempt's ``traceparent`` (and ``tracestate``) to ``headers``."""
        _PROPAGATOR.inject(headers)

    def call_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The headers of a call or send the current attempt makes, with the attempt's
        ``traceparent`` unless the handler set its own (the callee's invocation joins it)."""
        if any(k.lower() == "traceparent" for k, _v in headers):
            return headers
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return [*headers, *carrier.items()] if carrier else headers

    # -- completion ------------------------------------------------------------------------

    def invocation_ended(self, inv: rec.Invocation) -> None:
        """Emit the span of the completed invocation ``inv`` (once its completion committed)."""
        try:
            self._invocation_span(inv)
        except Exception:
            log.exception("could not emit the span of invocation %s", inv.id)

    def _invocation_span(self, inv: rec.Invocation) -> None:
        tc = inv.trace
        if tc is None or inv.completed_ms is None:
            return
        if tc.parent_span_id is not None:
            parent = _context_of(tc.trace_id, tc.parent_span_id, tc)
        else:
            parent = otel_context.Context()
        token = _PRESET.set((int(tc.trace_id, 16), int(tc.span_id, 16)))
        try:
            span = self._tracer.start_span(
                f"invoke {inv.service}/{inv.handler}",
                context=parent,
                kind=SpanKind.SERVER if inv.invoked_by == "ingress" else SpanKind.INTERNAL,
                attributes=_attributes(inv),
                start_time=inv.created_ms * 1_000_000,
            )
        finally:
            _PRESET.reset(token)
        failure = inv.result.failure if inv.result is not None else None
        if failure is not None:
            span.set_attribute("restate.error.code", failure.code)
            span.set_status(Status(StatusCode.ERROR, failure.message))
        else:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=max(inv.completed_ms, inv.created_ms) * 1_000_000)


def _target(inv: rec.Invocation) -> str:
    """Restate's invocation target: ``Service/handler``, ``Service/key/handler`` if keyed."""
    if inv.key is None:
        return f"{inv.service}/{inv.handler}"
    return f"{inv.service}/{inv.key}/{inv.handler}"


def _attributes(inv: rec.Invocation) -> dict[str, Any]:
    return {
        "rpc.system": "restate",
        "rpc.service": inv.service,
        "rpc.method": inv.handler,
        "restate.invocation.id": inv.id,
        "restate.invocation.target": _target(inv),
    }


def _context_of(trace_id: str, span_id: str, tc: rec.TraceContext) -> otel_context.Context:
    """A context whose current span is the (remote) span ``span_id`` of ``tc``'s trace."""
    span_context = SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(tc.flags),
        trace_state=TraceState.from_header([tc.state]) if tc.state else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def _outcome(span: Span, inv: rec.Invocation) -> None:
    outcome = _OUTCOMES.get(inv.status, str(inv.status))
    span.set_attribute("restate_lambda.attempt.outcome", outcome)
    if inv.status in (rec.Status.BACKING_OFF, rec.Status.PAUSED) and inv.last_failure:
        failure = inv.last_failure
        span.set_attribute("restate.error.code", failure.code)
        if inv.last_failure_stacktrace:
            span.set_attribute("restate.invocation.error.stacktrace", inv.last_failure_stacktrace)
        span.set_status(Status(StatusCode.ERROR, failure.message))
    else:
        span.set_status(Status(StatusCode.OK))


# -- the provider --------------------------------------------------------------------------


def default_provider(environ: Mapping[str, str] | None = None) -> Any:
    """The global tracer provider if the application installed one, else :func:`env_provider`."""
    installed = trace.get_tracer_provider()
    if not isinstance(installed, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return installed
    return env_provider(environ)


def env_provider(environ: Mapping[str, str] | None = None) -> Any:
    """An SDK ``TracerProvider`` exporting as the standard variables say.

    ``OTEL_TRACES_EXPORTER`` (default ``otlp``; comma-separated): ``otlp`` (protocol from
    ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL``, default ``http/protobuf``; needs
    ``opentelemetry-exporter-otlp-proto-http`` or ``-grpc``, else falls back to ``console``),
    ``console``, ``none``. The exporter reads its endpoint, headers and timeout from the
    ``OTEL_EXPORTER_OTLP_*`` variables itself; the SDK reads ``OTEL_SERVICE_NAME`` (default
    here: ``restate-lambda``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and the
    batch processor's ``OTEL_BSP_*``.
    """
    env = os.environ if environ is None else environ
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("opentelemetry-sdk is not installed: spans are not exported")
        return trace.NoOpTracerProvider()
    service = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "restate-lambda"}
    provider = TracerProvider(resource=Resource.create(service))
    names = env.get("OTEL_TRACES_EXPORTER", "") or "otlp"
    for name in (n.strip().lower() for n in names.split(",")):
        exporter = _exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name)
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    kind = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter")
    except ImportError:
        log.warning(
            "the OTLP exporter for %s is not installed (opentelemetry-exporter-otlp); "
            "spans go to the console",
            protocol,
        )
        return ConsoleSpanExporter()
    return module.OTLPSpanExporter()
