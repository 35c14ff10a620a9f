"""Handler mistakes found before anything runs: what retrying could never fix.

A plain ``def`` handler makes the official SDK fail every attempt with ``object ... can't be
used in 'await' expression`` (and be retried 70 times); this module finds such handlers in a
loaded module or an ASGI app and names them with file and line. (``restate_lambda`` refuses
them when they are decorated.)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any


def _services_of_app(app: Any) -> list[Any]:
    """The service objects an ASGI app of either SDK serves (empty if it cannot tell)."""
    endpoint = getattr(app, "endpoint", None)  # restate_lambda's AsgiApp
    services = getattr(endpoint, "services", None)
    if isinstance(services, dict):
        return list(services.values())
    for cell in getattr(app, "__closure__", None) or ():  # restate's asgi_app closure
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        services = getattr(value, "services", None)
        if isinstance(services, dict):
            return list(services.values())
    return []


def def_line(code: Any) -> int:
    """The line of the ``def`` of ``code`` (past its decorators, where ``co_firstlineno``
    points)."""
    import linecache

    line = int(code.co_firstlineno)
    for offset in range(50):
        text = linecache.getline(code.co_filename, line + offset).lstrip()
        if text.startswith(("def ", "async def ")):
            return line + offset
    return line


def handler_problems(services: Iterable[Any]) -> list[str]:
    """One line per handler of ``services`` that can never run, ``file:line: what``."""
    problems = []
    for svc in services:
        handlers = getattr(svc, "handlers", None)
        if not isinstance(handlers, dict):
            continue
        for handler in handlers.values():
            fn = getattr(handler, "fn", None)
            if fn is None:
                continue
            fn = inspect.unwrap(fn)  # restate wraps the function (functools.wraps)
            if inspect.iscoroutinefunction(fn):
                continue
            code = getattr(fn, "__code__", None)
            where = f"{code.co_filename}:{def_line(code)}: " if code is not None else ""
            problems.append(
                f"{where}handler {svc.name}.{handler.name} is a plain `def`: Restate handlers "
                "must be `async def`"
            )
    return problems


def app_problems(app: Any) -> list[str]:
    """:func:`handler_problems` of the services an ASGI app serves."""
    return handler_problems(_services_of_app(app))


def module_problems(module: Any) -> list[str]:
    """:func:`handler_problems` of the services defined at the top level of ``module``."""
    found = [
        value
        for value in vars(module).values()
        if isinstance(getattr(value, "handlers", None), dict) and hasattr(value, "name")
    ]
    return handler_problems(found)
