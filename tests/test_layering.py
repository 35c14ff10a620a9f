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


#: The one exception, and why: ``restate_lambda.testing`` is the public test harness. It runs
#: the whole runtime in the user's test process, so it sits at the top of the stack (above
#: infra) even though it is spelled inside the SDK's namespace, where users look for it
#: (``restate.harness`` in the official SDK). Nothing else in ``restate_lambda`` may import
#: it (checked below), and ``import restate_lambda`` does not load it (checked below), so a
#: handler Lambda that imports the SDK never pays for it.
TOP_OF_STACK = ROOT / "restate_lambda" / "testing"
TOP_ALLOWED = {"infra", "ingress", "invoker", "backends"}


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
        allowed = ALLOWED[package] | (TOP_ALLOWED if TOP_OF_STACK in path.parents else set())
        for imported in _imports(path) - allowed - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert [] == bad


def _imports_module(path: Path, module: str) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name == module or a.name.startswith(module + ".") for a in node.names
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and (node.module == module or node.module.startswith(module + "."))
        ):
            return True
    return False


def test_only_the_harness_and_infra_import_the_harness() -> None:
    """No SDK module outside ``restate_lambda/testing`` imports it (it loads the runtime); the
    runtime's packages below infra do not either."""
    bad = []
    for package in ("restate_lambda", "backends", "invoker", "ingress"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if TOP_OF_STACK in path.parents:
                continue
            if _imports_module(path, "restate_lambda.testing"):
                bad.append(str(path.relative_to(ROOT)))
    assert [] == bad


def test_harness_import_is_lazy() -> None:
    """``import restate_lambda.testing`` (what pytest does for the plugin) loads no runtime."""
    import subprocess
    import sys

    code = (
        "import sys, restate_lambda.testing, restate_lambda.testing.plugin; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('backends', 'invoker', 'ingress', 'infra', 'starlette', 'httpx')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "" == out.stdout.strip()


def test_sdk_import_loads_no_server_side_modules() -> None:
    """Importing restate_lambda loads no boto3, starlette or backend module."""
    import subprocess
    import sys

    code = (
        "import sys, restate_lambda; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'starlette', 'backends', 'invoker', 'ingress', 'infra', 'httpx')"
        " or m.startswith('restate_lambda.testing')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "" == out.stdout.strip()
