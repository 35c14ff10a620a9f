"""OpenTelemetry traces of invocations (optional: ``pip install 'restate-lambda[otel]'``).

This module never imports OpenTelemetry itself: tracing is off until :func:`configure` (or
:func:`configure_from_env`, which every :class:`~invoker.engine.Engine` calls) turns it on, and
only then is :mod:`invoker.tracing_otel` (which needs ``opentelemetry-api``) loaded. When off,
each hook in the engine costs one call of :func:`current` returning None.

Turned on by the environment when any of these is set (and ``OTEL_SDK_DISABLED`` is not
``true``): ``RESTATE_LAMBDA_TRACING=1``, ``OTEL_TRACES_EXPORTER`` (other than ``none``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``.
``RESTATE_LAMBDA_TRACING=0`` turns it off whatever else is set. The spans go to the global
tracer provider when the application installed one (``opentelemetry-instrument``), else to a
provider built from the standard ``OTEL_`` variables (:func:`invoker.tracing_otel.env_provider`).

What is traced (see :mod:`invoker.tracing_otel`): a span per invocation and one per attempt, in
the trace of the ``traceparent`` the invocation was submitted with; the attempt's own
``traceparent`` goes to the deployment with the request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invoker.tracing_otel import Tracing

log = logging.getLogger("restate_lambda.tracing")

_active: Tracing | None = None
#: Set by an explicit :func:`configure`: the environment no longer decides.
_explicit = False

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def current() -> Tracing | None:
    """The active tracing, or None when tracing is off (the engine's hooks check this)."""
    return _active


def configure(provider: Any = None, *, enabled: bool = True) -> Tracing | None:
    """Turn tracing on with ``provider`` (an OpenTelemetry ``TracerProvider``; None: the global
    one, or one built from the ``OTEL_`` variables), or off with ``enabled=False``.

    Tests pass a ``TracerProvider`` with an ``InMemorySpanExporter``. Raises ImportError when
    ``opentelemetry-api`` is not installed.
    """
    global _active, _explicit
    _explicit = True
    if not enabled:
        _active = None
        return None
    from invoker.tracing_otel import Tracing, default_provider

    _active = Tracing(provider if provider is not None else default_provider())
    return _active


def reset() -> None:
    """Back to the initial state: off, and decided by the environment again."""
    global _active, _explicit
    _active = None
    _explicit = False


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    own = env.get("RESTATE_LAMBDA_TRACING", "").strip().lower()
    if own in _FALSE:
        return False
    if own in _TRUE:
        return True
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_from_env(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Turn tracing on if the environment asks for it and no explicit :func:`configure` came
    first; the active tracing (or None). Without OpenTelemetry installed it logs a warning."""
    global _active
    if _explicit or _active is not None or not enabled_by_env(environ):
        return _active
    try:
        from invoker.tracing_otel import Tracing, default_provider
    except ImportError:
        log.warning(
            "tracing is enabled by the environment but opentelemetry is not installed "
            "(pip install 'restate-lambda[otel]'); no traces"
        )
        return None
    _active = Tracing(default_provider(environ))
    return _active
