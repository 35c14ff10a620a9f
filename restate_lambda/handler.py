"""Handler descriptions: signature, serdes, kind and the options that go into the manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from restate_lambda.options import InvocationRetryPolicy, Schedule
from restate_lambda.serde import DefaultSerde, Serde

HandlerKind = Literal["exclusive", "shared", "workflow"]
_HANDLER_ATTR = "__restate_handler__"


@dataclass
class ServiceTag:
    """Which service a handler belongs to."""

    kind: Literal["service", "object", "workflow"]
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass
class HandlerOptions:
    """Per-handler manifest options (v3+/v4)."""

    metadata: dict[str, str] | None = None
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None
    schedules: list[Schedule | str] | None = None


@dataclass
class Handler:
    """One handler: its function and how to (de)serialize its input and output."""

    service_tag: ServiceTag
    name: str
    kind: HandlerKind | None
    fn: Any
    arity: int
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    input_type: Any = None
    output_type: Any = None
    void_input: bool = False
    void_output: bool = False
    optional_input: bool = False
    optional_output: bool = False
    accept: str = "application/json"
    content_type: str = "application/json"
    description: str | None = None
    options: HandlerOptions = field(default_factory=HandlerOptions)


def core_type(annotation: Any) -> tuple[bool, Any]:
    """(is optional, the type without ``None``) of an annotation."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, _union_type()) and len(args) == 2 and type(None) in args:
        return True, args[0] if args[1] is type(None) else args[1]
    return False, annotation


def _union_type() -> Any:
    import types

    return types.UnionType


def make_handler(
    tag: ServiceTag,
    fn: Any,
    name: str | None,
    kind: HandlerKind | None,
    accept: str,
    content_type: str,
    input_serde: Serde[Any],
    output_serde: Serde[Any],
    options: HandlerOptions,
) -> Handler:
    """Inspect ``fn`` and build its :class:`Handler` (attached to ``fn`` for typed calls)."""
    params, hints = signature_of(fn)
    if not _is_async(fn):
        raise TypeError(
            f"{_def_site(fn)}: handler {tag.name}.{name or fn.__name__}"
            " is a plain `def`: Restate handlers must be `async def`"
        )
    if not params:
        raise ValueError(f"handler {fn.__name__} must take the context as first parameter")
    h = Handler(
        service_tag=tag,
        name=name or fn.__name__,
        kind=kind,
        fn=fn,
        arity=len(params),
        input_serde=input_serde,
        output_serde=output_serde,
        accept=accept,
        content_type=content_type,
        description=_cleandoc(fn.__doc__),
        options=options,
    )
    if len(params) == 1:
        h.void_input = True
    else:
        ann = hints.get(params[-1], _MISSING)
        h.optional_input, h.input_type = core_type(None if ann is _MISSING else ann)
        if isinstance(input_serde, DefaultSerde):
            h.input_serde = DefaultSerde(h.input_type)
    ret = hints.get("return", _MISSING)
    if ret is None or ret is _MISSING or ret is type(None):
        h.void_output = True
    else:
        h.optional_output, h.output_type = core_type(ret)
        if isinstance(output_serde, DefaultSerde):
            h.output_serde = DefaultSerde(h.output_type)
    setattr(fn, _HANDLER_ATTR, h)
    return h


def handler_from_callable(fn: Any) -> Handler:
    """The :class:`Handler` registered for a decorated function."""
    h = getattr(fn, _HANDLER_ATTR, None)
    if h is None:
        raise ValueError(f"{fn!r} is not a Restate handler (decorate it with @svc.handler())")
    return h  # type: ignore[no-any-return]


#: ``co_flags`` bit of an ``async def`` function (``inspect.CO_COROUTINE``; inspect is slow to
#: import at cold start).
_CO_COROUTINE = 0x80


def _def_site(fn: Any) -> str:
    """``file:line`` of the ``def`` of ``fn`` (past its decorators)."""
    import linecache

    code = fn.__code__
    line = code.co_firstlineno
    for offset in range(50):
        text = linecache.getline(code.co_filename, line + offset).lstrip()
        if text.startswith(("def ", "async def ")):
            return f"{code.co_filename}:{line + offset}"
    return f"{code.co_filename}:{line}"


def _is_async(fn: Any) -> bool:
    """``async def``, directly or under ``functools.wraps`` decorators."""
    for _ in range(100):
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_flags & _CO_COROUTINE:
            return True
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None:
            return False
        fn = wrapped
    return False


#: An absent annotation (``inspect`` is not imported: it costs several ms at cold start).
_MISSING: Any = object()


def signature_of(fn: Callable[..., Any]) -> tuple[list[str], dict[str, Any]]:
    """Positional parameter names of ``fn`` and its evaluated type hints.

    Raises:
        TypeError: ``fn`` is not a plain Python function.
        NameError: a string annotation does not resolve.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        raise TypeError(f"{fn!r} is not a Python function")
    names = list(code.co_varnames[: code.co_argcount])
    return names, get_type_hints(fn)


def _cleandoc(doc: str | None) -> str | None:
    """``inspect.cleandoc``: strip the indentation of a docstring."""
    if not doc:
        return None
    lines = doc.expandtabs().splitlines()
    margin = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()), default=0)
    cleaned = [lines[0].strip(), *(line[margin:].rstrip() for line in lines[1:])]
    while cleaned and not cleaned[-1]:
        cleaned.pop()
    while cleaned and not cleaned[0]:
        cleaned.pop(0)
    return "\n".join(cleaned) or None
