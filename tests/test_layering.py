"""Dependencies point one way: ingress -> invoker -> backends -> restate_lambda; infra wires."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("restate_lambda", "backends", "invoker", "ingress", "infra")
ALLOWED: dict[str, set[str]] = {
    "restate_lambda": set(),
    "backends": {"restate_lambda"},
    "invoker": {"backends", "restate_lambda"},
    "ingress": {"invoker", "restate_lambda"},
    "infra": {"ingress", "invoker", "backends", "restate_lambda"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_lower_layers(package: str) -> None:
    """No module imports a package above its own layer."""
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in _imports(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert [] == bad


def test_sdk_import_loads_no_server_side_modules() -> None:
    """Importing restate_lambda loads no boto3, starlette or backend module."""
    import subprocess
    import sys

    code = (
        "import sys, restate_lambda; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'starlette', 'backends', 'invoker', 'ingress', 'infra', 'httpx')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "" == out.stdout.strip()
