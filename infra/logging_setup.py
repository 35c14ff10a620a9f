"""Logging of the runtime's processes: text or JSON lines, invocation ids, stack traces.

``restate-lambda dev --log-format json`` and ``RESTATE_LAMBDA_LOG_FORMAT=json`` (the Lambda
functions) write one JSON object per line::

    {"time": "2026-08-22T10:00:00.123Z", "level": "WARNING", "logger": "restate_lambda.settle",
     "message": "invocation inv_1… Shop/buy attempt failed (1): [500] ValueError('declined')",
     "invocation_id": "inv_1…", "stacktrace": "Traceback (most recent call last): …"}

The default text format is ``TIME LEVEL LOGGER: MESSAGE``. In both, a record's fields given as
``extra=`` (``invocation_id``, ``stacktrace``, …) are kept: JSON shows each as a field, text
appends a ``stacktrace`` below the line as it does an exception's traceback. Where a record
names no ``invocation_id``, the first argument of an engine record (``"invocation %s …"``) or
the ``restate_invocation_id`` of :func:`restate_lambda.getLogger`'s records is used.

A failing invocation is retried many times, and every attempt may log the same stack trace
(the official SDK, served in process by ``restate-lambda dev``, logs it on every attempt): a
trace is written once per 10 minutes, and a repeat is one line naming the trace's id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Environment variable naming the format (the Lambda functions; ``dev`` has an option).
FORMAT_ENV = "RESTATE_LAMBDA_LOG_FORMAT"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
#: Extra fields not worth a JSON field of their own.
_HIDDEN = frozenset({"restate_invocation_id", "color_message"})
_MARK = "_restate_lambda_handler"


def log_format_from_env(default: LogFormat = "text") -> LogFormat:
    """The format ``RESTATE_LAMBDA_LOG_FORMAT`` names (``text``/``json``, any case).

    Raises:
        ValueError: another value.
    """
    raw = (os.environ.get(FORMAT_ENV) or "").strip().lower()
    if not raw:
        return default
    return parse_log_format(raw)


def parse_log_format(value: str) -> LogFormat:
    """``value`` as a :data:`LogFormat` (ValueError naming the choices otherwise)."""
    lowered = value.strip().lower()
    for choice in LOG_FORMATS:
        if lowered == choice:
            return choice
    raise ValueError(f"unknown log format {value!r}: use text or json")


def invocation_id_of(record: logging.LogRecord) -> str | None:
    """The invocation a record is about: ``extra={"invocation_id": …}``, the id of a
    replay-aware logger's record, or an ``inv_…`` first argument (the engine's records)."""
    for attr in ("invocation_id", "restate_invocation_id"):
        value = getattr(record, attr, None)
        if isinstance(value, str) and value:
            return value
    args = record.args
    if isinstance(args, tuple) and args and isinstance(args[0], str) and args[0].startswith("inv_"):
        return args[0]
    return None


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD and k not in _HIDDEN and not k.startswith("_")
    }


class TraceMemory:
    """The stack traces shown lately, so that a trace repeated by every retry of a failing
    invocation is written once per ``window_s`` seconds (by ``size`` distinct traces)."""

    def __init__(self, window_s: float = 600.0, size: int = 1000) -> None:
        self.window_s = window_s
        self.size = size
        self._shown: OrderedDict[str, tuple[float, int]] = OrderedDict()

    @staticmethod
    def trace_id(text: str) -> str:
        """A short id of a trace (the same text, the same id)."""
        return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]

    def repeated(self, text: str, now: float) -> int:
        """How often ``text`` was already shown within the window (0: show it now)."""
        key = self.trace_id(text)
        found = self._shown.get(key)
        if found is not None and now - found[0] < self.window_s:
            self._shown[key] = (found[0], found[1] + 1)
            self._shown.move_to_end(key)
            return found[1] + 1
        self._shown[key] = (now, 0)
        self._shown.move_to_end(key)
        while len(self._shown) > self.size:
            self._shown.popitem(last=False)
        return 0


def _traces(formatter: logging.Formatter, record: logging.LogRecord) -> list[tuple[str, str]]:
    """``(field, text)`` of the traces a record carries: its ``stacktrace`` extra (what an SDK
    sent) and its exception's traceback."""
    out: list[tuple[str, str]] = []
    trace = getattr(record, "stacktrace", None)
    if isinstance(trace, str) and trace.strip():
        out.append(("stacktrace", trace.rstrip()))
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        out.append(("exception", record.exc_text.rstrip()))
    return out


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, then the stack traces the record carries (its
    ``stacktrace`` extra, its exception's traceback); a trace shown within the last
    ``memory.window_s`` seconds becomes ``[stack trace ID repeated]``."""

    def __init__(self, memory: TraceMemory | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self.memory = memory or TraceMemory()
        self._second: int | None = None
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``YYYY-MM-DD HH:MM:SS,mmm`` in local time, as :class:`logging.Formatter` writes it;
        the date and time of one second are formatted once (a dev server logs a line per
        invocation, hundreds a second)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = super().formatTime(record, self.default_time_format)[:19]
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        """The line (and the stack traces below it)."""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        for _field, trace in _traces(self, record):
            repeats = self.memory.repeated(trace, record.created)
            if repeats:
                text += f" [stack trace {self.memory.trace_id(trace)} repeated, {repeats}x]"
            else:
                text += f"\n{trace}"
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring). A stack trace
    shown within the window is left out: ``stacktrace_id`` names it, ``repeated`` counts."""

    def __init__(self, memory: TraceMemory | None = None) -> None:
        super().__init__()
        self.memory = memory or TraceMemory()

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        inv_id = invocation_id_of(record)
        if inv_id is not None:
            out["invocation_id"] = inv_id
        for key, value in _extras(record).items():
            if value is not None and key not in out and key != "stacktrace":
                out[key] = value
        for field_name, trace in _traces(self, record):
            out[f"{field_name}_id"] = self.memory.trace_id(trace)
            repeats = self.memory.repeated(trace, record.created)
            if repeats:
                out["repeated"] = repeats
            else:
                out[field_name] = trace
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of ``fmt``."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(
    level: int | str | None = logging.INFO,
    fmt: LogFormat = "text",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send the root logger's records at ``level`` and above (None: keep the root's level) to
    ``stream`` (stderr) in ``fmt``.

    Calling it again replaces the handler it added. On AWS Lambda, where the runtime already
    installed a root handler (it writes to CloudWatch), that handler gets the formatter instead
    of a second handler being added. Uvicorn's loggers should propagate to the root (the dev
    server passes ``log_config=None``) so that its lines share the format.
    """
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and root.handlers and stream is None:
        for handler in root.handlers:
            handler.setFormatter(formatter(fmt))
        return root.handlers[0]
    ours = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    ours.setFormatter(formatter(fmt))
    setattr(ours, _MARK, True)
    root.addHandler(ours)
    return ours


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last-resort
    handler does), not to the stderr of the moment the handler was made: a CLI run inside a
    test runner or a notebook that swaps ``sys.stderr`` still sees its lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass  # always the current sys.stderr


def configure_lambda_logging(level: int | str) -> None:
    """Logging of a Lambda function of the runtime: ``restate_lambda`` loggers at ``level``;
    with ``RESTATE_LAMBDA_LOG_FORMAT=json``, the Lambda runtime's handler writes JSON lines
    (an unknown format is a warning, and text stays)."""
    logging.getLogger("restate_lambda").setLevel(level)
    try:
        fmt = log_format_from_env()
    except ValueError as exc:
        logging.getLogger("restate_lambda.aws").warning("%s: %s; logs stay text", FORMAT_ENV, exc)
        return
    if fmt == "json":
        configure_logging(None, "json")
