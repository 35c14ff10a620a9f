"""Wheel build hook: install the runtime's packages under one namespace, ``restate_lambda``.

The repository keeps the runtime in top-level folders (``infra``, ``backends``, ``ingress``,
``invoker``) and its modules import each other by those names. Installed as such, they would
collide with a user's own packages of the same names (every CDK project has an ``infra``), so
the wheel moves them: ``[tool.hatch.build.targets.wheel.sources]`` in pyproject.toml maps each
folder to its place in the wheel (``infra/`` -> ``restate_lambda/_runtime/infra/``) and this
hook rewrites the references to them in every shipped module, ``restate_lambda``'s included:

* absolute imports, wherever they stand (``from infra.cli import app``, ``import backends.api as
  api``, ``import invoker``, lazy imports inside functions);
* string literals naming a module (``"infra.cli"`` for ``python -m``, ``"infra.cli:app"``), and a
  bare package name passed to ``importlib.resources.files`` / ``importlib.import_module``;
* the console scripts and entry points of the wheel's metadata (``infra.cli:app``).

Edits keep every line where it was (tracebacks point at the same lines as the source). A form
the hook cannot rewrite faithfully (``import infra.cli`` without ``as``, which binds ``infra``)
fails the build with the line to change. The source tree, editable installs (``pip install
-e .``, a ``.pth`` of the repository root) and the sdist are left as they are.

Written by hand because no hatch plugin rewrites imports: ``sources`` only moves files, and
vendoring tools rename third-party code, not a project's own packages. It uses only ``ast``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Calls whose first argument, a bare package name, names a module or a package's resources.
_MODULE_ARG_CALLS = frozenset({"files", "import_module", "__import__", "find_spec"})
_OBJECT_REF = re.compile(r"^([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)(:[A-Za-z_][\w.]*)?$")
_FROM = re.compile(rb"from\s+")

_NAMESPACE_DOC = '''"""restate-lambda's runtime ({names}), placed here by the wheel build.

In the repository these are top-level packages; installed, they live under ``restate_lambda``
so that a project's own packages of the same names cannot shadow them (see hatch_build.py).
Not a public API: use ``restate_lambda``, ``restate_lambda.testing`` and the ``restate-lambda``
command.
"""
'''


class RewriteError(Exception):
    """A reference to a moved package that cannot be rewritten faithfully."""


def rewrite_ref(ref: str, moved: dict[str, str]) -> str:
    """``infra.cli:app`` -> ``restate_lambda._runtime.infra.cli:app``; other refs unchanged."""
    match = _OBJECT_REF.match(ref)
    if match is None or match.group(1) not in moved:
        return ref
    return moved[match.group(1)] + ref[len(match.group(1)) :]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def rewrite_source(text: str, moved: dict[str, str], filename: str = "<source>") -> str:
    """``text`` with its references to the packages of ``moved`` (top name -> new dotted
    name) rewritten; raises :class:`RewriteError` for a form it cannot rewrite."""
    tree = ast.parse(text, filename)
    lines = text.encode().splitlines(keepends=True)
    # (line index, start byte, end byte, replacement); ast offsets are UTF-8 byte offsets
    edits: list[tuple[int, int, int, bytes]] = []

    def where(node: ast.AST) -> str:
        return f"{filename}:{getattr(node, 'lineno', '?')}"

    def rename(line: int, col: int, top: str, new: str, node: ast.AST) -> None:
        if lines[line - 1][col : col + len(top.encode())] != top.encode():
            raise RewriteError(f"{where(node)}: expected {top!r} at column {col}")
        edits.append((line - 1, col, col + len(top.encode()), new.encode()))

    in_fstring: set[int] = set()
    call_args: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            in_fstring.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in _MODULE_ARG_CALLS:
                call_args.add(id(node.args[0]))
    docstrings = _docstrings(tree)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top in moved:
                found = _FROM.match(lines[node.lineno - 1], node.col_offset)
                if found is None:
                    raise RewriteError(f"{where(node)}: put 'from {node.module}' on one line")
                rename(node.lineno, found.end(), top, moved[top], node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in moved:
                    continue
                if alias.asname is None and "." in alias.name:
                    raise RewriteError(
                        f"{where(node)}: 'import {alias.name}' binds {top!r}, which the wheel "
                        f"does not have; write 'from {alias.name.rsplit('.', 1)[0]} import "
                        f"{alias.name.rsplit('.', 1)[1]}' or add 'as NAME'"
                    )
                new = moved[top] if alias.asname else f"{moved[top]} as {top}"
                rename(alias.lineno, alias.col_offset, top, new, node)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in in_fstring
        ):
            value = node.value
            dotted = _OBJECT_REF.match(value) is not None and (":" in value or "." in value)
            if not (dotted or (value in moved and id(node) in call_args)):
                continue
            new_value = rewrite_ref(value, moved)
            if new_value == value:
                continue
            line = lines[node.lineno - 1]
            end = node.end_col_offset
            if node.end_lineno != node.lineno or end is None:
                raise RewriteError(f"{where(node)}: put the string {value!r} on one line")
            literal = line[node.col_offset : end].decode()
            try:
                same = ast.literal_eval(literal) == value
            except (ValueError, SyntaxError):
                same = False
            if not same:
                raise RewriteError(f"{where(node)}: write {value!r} as one plain string literal")
            quote = literal[0]
            if literal[1:-1] == value and quote in "'\"" and literal[-1] == quote:
                replacement = quote + new_value + quote  # the same quotes as before
            else:
                replacement = repr(new_value)
            edits.append((node.lineno - 1, node.col_offset, end, replacement.encode()))

    for index, start, end, edit in sorted(edits, reverse=True):
        lines[index] = lines[index][:start] + edit + lines[index][end:]
    result = b"".join(lines).decode()
    ast.parse(result, filename)  # still valid Python
    return result


class RuntimeNamespaceHook(BuildHookInterface):  # type: ignore[type-arg]
    """The wheel's build hook (``[tool.hatch.build.targets.wheel.hooks.custom]``)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._staging: str | None = None
        if self.target_name != "wheel" or version != "standard":
            return  # editable wheels import the source tree as it is
        moved: dict[str, str] = {}  # infra -> restate_lambda._runtime.infra
        for source, target in self.build_config.sources.items():
            folder, place = source.strip(os.sep), target.strip(os.sep)
            if not folder or os.sep in folder:
                raise RewriteError(f"wheel sources: {source!r} is not a top-level folder")
            moved[folder] = place.replace(os.sep, ".")
        if not moved:
            return
        root = Path(self.root)
        self._staging = tempfile.mkdtemp(prefix="restate-lambda-wheel-")
        staging = Path(self._staging)
        force_include: dict[str, str] = build_data.setdefault("force_include", {})

        # Every shipped module: the moved packages and those that import them.
        packages = [*moved, *self.build_config.only_include.values()]
        for package in dict.fromkeys(p.strip(os.sep) for p in packages):
            for path in sorted((root / package).rglob("*.py")):
                if "__pycache__" in path.parts:
                    continue
                relative = path.relative_to(root).as_posix()
                text = path.read_text("utf-8")
                new = rewrite_source(text, moved, relative)
                if new != text:
                    staged = staging / relative
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    staged.write_text(new, "utf-8")
                    # the source-relative target goes through `sources` like the file it replaces
                    force_include[str(staged)] = relative

        # The namespace packages between restate_lambda and the moved folders (`_runtime`).
        for place in sorted(set(moved.values())):
            parts = place.split(".")[:-1]
            for depth in range(2, len(parts) + 1):
                init = Path(*parts[:depth], "__init__.py")
                if not (root / init).exists() and init.as_posix() not in force_include.values():
                    staged = staging / init
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    staged.write_text(_NAMESPACE_DOC.format(names=", ".join(sorted(moved))))
                    force_include[str(staged)] = init.as_posix()

        # Console scripts and entry points (`restate-lambda = infra.cli:app`).
        core = self.metadata.core
        for group in (core.scripts, core.gui_scripts, *core.entry_points.values()):
            for name, ref in group.items():
                group[name] = rewrite_ref(ref, moved)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_staging", None):
            shutil.rmtree(self._staging, ignore_errors=True)  # type: ignore[arg-type]
