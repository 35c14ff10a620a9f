"""What a query's filters let the store skip: equalities on each table scan of a DataFusion plan.

The query is planned once over empty tables. DataFusion's optimizer moves filters next to the
scans they restrict (turning ``IN`` lists into ``OR``s, copying join-key equalities to both
sides). For each scan, the conjunction of the filters directly above it (through aliases only)
*implies* a set of allowed values for some columns:

* ``col = 'v'`` and ``col IN ('a', 'b')`` restrict ``col``;
* ``A AND B`` keeps every restriction of both (intersected on a shared column);
* ``A OR B`` keeps the columns both sides restrict (their union);
* anything else restricts nothing.

A restriction is a promise about which rows the query can ever see, so reading only those rows
gives the same answer; DataFusion still applies every filter itself. ``fetch`` is a ``LIMIT``
the optimizer pushed into a scan with no filter above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Allowed = dict[str, frozenset[object]]


@dataclass(slots=True)
class Scan:
    """One scan of a table in a plan: what its filters allow, and its pushed ``LIMIT``."""

    table: str
    allowed: Allowed = field(default_factory=dict)
    fetch: int | None = None


def _literal(expr: Any) -> tuple[bool, object]:
    """``(True, value)`` for a string or integer literal, else ``(False, None)``."""
    try:
        if type(expr.to_variant()).__name__ != "Literal":
            return False, None
        value = expr.python_value().as_py()
    except Exception:  # an expression the bindings cannot convert
        return False, None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return True, value
    return False, None


def _column(expr: Any) -> str | None:
    try:
        variant = expr.to_variant()
    except Exception:
        return None
    if type(variant).__name__ != "Column":
        return None
    name: str = variant.name()
    return name


def _and(a: Allowed, b: Allowed) -> Allowed:
    out = dict(a)
    for col, values in b.items():
        out[col] = out[col] & values if col in out else values
    return out


def _or(a: Allowed, b: Allowed) -> Allowed:
    return {col: a[col] | b[col] for col in a.keys() & b.keys()}


def implied(expr: Any) -> Allowed:
    """The column values ``expr`` allows (columns it does not restrict are absent)."""
    try:
        variant = expr.to_variant()
    except Exception:
        return {}
    kind = type(variant).__name__
    if kind == "BinaryExpr":
        op = str(variant.op()).upper()
        left, right = variant.left(), variant.right()
        if op == "AND":
            return _and(implied(left), implied(right))
        if op == "OR":
            return _or(implied(left), implied(right))
        if op == "=":
            for col_side, lit_side in ((left, right), (right, left)):
                col = _column(col_side)
                ok, value = _literal(lit_side)
                if col is not None and ok:
                    return {col: frozenset([value])}
        return {}
    if kind == "InList" and not variant.negated():
        col = _column(variant.expr())
        values = []
        for item in variant.list():
            ok, value = _literal(item)
            if not ok:
                return {}
            values.append(value)
        return {} if col is None else {col: frozenset(values)}
    return {}


def scans(plan: Any, tables: frozenset[str]) -> list[Scan]:
    """Every scan of one of ``tables`` in ``plan`` (a DataFusion ``LogicalPlan``)."""
    out: list[Scan] = []

    def visit(node: Any, predicates: list[Any]) -> None:
        try:
            variant = node.to_variant()
        except Exception:
            variant = None
        kind = type(variant).__name__
        if kind in ("Filter", "SubqueryAlias"):
            more = [variant.predicate()] if kind == "Filter" else []
            for child in node.inputs():
                visit(child, [*predicates, *more])
            return
        if kind == "TableScan":
            name = str(variant.table_name()).rsplit(".", 1)[-1]
            if name in tables:
                pushed = list(variant.filters())
                allowed: Allowed = {}
                for predicate in [*predicates, *pushed]:
                    allowed = _and(allowed, implied(predicate))
                fetch = variant.fetch() if not predicates and not pushed else None
                out.append(Scan(name, allowed, fetch))
            return
        for child in node.inputs():
            visit(child, [])

    visit(plan, [])
    return out


def common(scan_list: list[Scan], column: str) -> frozenset[object] | None:
    """The values of ``column`` any of the scans can see; None if one scan sees all."""
    values: frozenset[object] = frozenset()
    for scan in scan_list:
        allowed = scan.allowed.get(column)
        if allowed is None:
            return None
        values |= allowed
    return values


def strings(values: frozenset[object] | None) -> list[str] | None:
    """The string values of a restriction (None stays None: unrestricted)."""
    if values is None:
        return None
    return [v for v in values if isinstance(v, str)]


def _satisfies(row: dict[str, Any], allowed: Allowed) -> bool:
    for col, values in allowed.items():
        value = row.get(col)
        if value is None:
            return False
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue  # compared in Arrow's types only
        if not all(type(v) is type(value) for v in values):
            continue
        if value not in values:
            return False
    return True


def keep(rows: list[dict[str, Any]], scan_list: list[Scan]) -> list[dict[str, Any]]:
    """The rows some scan can see (the others would be filtered out by DataFusion anyway)."""
    if any(not scan.allowed for scan in scan_list):
        return rows
    return [row for row in rows if any(_satisfies(row, s.allowed) for s in scan_list)]
