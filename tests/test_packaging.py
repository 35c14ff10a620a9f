"""The built wheel: one top-level package, restate_lambda, whose runtime (the repository's
infra, backends, ingress and invoker) lives under restate_lambda._runtime, so that a user's
project with its own ``infra/`` or ``backends/`` package cannot shadow it (hatch_build.py).

The wheel is built once per session (``pip wheel``, about 10 s; hatchling comes from the build
isolation, or from this venv when it has it). The clean-venv tests install it with its
dependencies from the package index into a fresh venv, as a user would (40-70 s here), and use
it from a project that has its own infra, backends, invoker and ingress packages: they run
with RESTATE_LAMBDA_WHEEL_INSTALL=1. Without it, a static check stands in for the install's
resolution: every third-party module the wheel imports belongs to a declared dependency.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.dev import ROOT
from tests.support.processes import free_ports

RUNTIME = ("infra", "backends", "ingress", "invoker")
NAMESPACE = "restate_lambda._runtime"
DIST_INFO = "restate_lambda-0.1.0.dist-info"


def _load_hook() -> types.ModuleType:
    """hatch_build.py as a module; without hatchling here, with a stand-in for its base class
    (the tests below use the rewriting functions, which need only ``ast``)."""
    if importlib.util.find_spec("hatchling") is None:
        stub = types.ModuleType("hatchling.builders.hooks.plugin.interface")
        stub.BuildHookInterface = type("BuildHookInterface", (), {})  # type: ignore[attr-defined]
        sys.modules.setdefault(stub.__name__, stub)
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()
MOVED = {name: f"{NAMESPACE}.{name}" for name in RUNTIME}


# -- the rewriting, on small sources ------------------------------------------------------------

REWRITES = {
    "from infra.cli import app\n": f"from {NAMESPACE}.infra.cli import app\n",
    "from invoker import keys\n": f"from {NAMESPACE}.invoker import keys\n",
    "import backends.api as api\n": f"import {NAMESPACE}.backends.api as api\n",
    "import ingress\n": f"import {NAMESPACE}.ingress as ingress\n",
    "import os, invoker\n": f"import os, {NAMESPACE}.invoker as invoker\n",
    "def f():\n    from backends.sqlite import (\n        X,\n    )\n": (
        f"def f():\n    from {NAMESPACE}.backends.sqlite import (\n        X,\n    )\n"
    ),
    'cmd = [sys.executable, "-m", "infra.cli"]\n': (
        f'cmd = [sys.executable, "-m", "{NAMESPACE}.infra.cli"]\n'
    ),
    "uvicorn.run('infra.dev:app')\n": f"uvicorn.run('{NAMESPACE}.infra.dev:app')\n",
    'files("backends").joinpath("x.sql")\n': f'files("{NAMESPACE}.backends").joinpath("x.sql")\n',
    'importlib.import_module("invoker")\n': f'importlib.import_module("{NAMESPACE}.invoker")\n',
    # unchanged: data that spells a package name, docstrings, other packages
    'source = "ingress"\nlog = getLogger("restate_lambda.ingress")\n': (
        'source = "ingress"\nlog = getLogger("restate_lambda.ingress")\n'
    ),
    '"""See infra.cli."""\n': '"""See infra.cli."""\n',
    "from infrastructure import x\nimport invokers\nfrom . import infra\n": (
        "from infrastructure import x\nimport invokers\nfrom . import infra\n"
    ),
    "x = 'é'; from infra import y\n": f"x = 'é'; from {NAMESPACE}.infra import y\n",
}


@pytest.mark.parametrize("source", sorted(REWRITES))
def test_rewrite_source(source: str) -> None:
    """Imports and module-naming strings move to the namespace; lines stay where they were."""
    assert REWRITES[source] == hook.rewrite_source(source, MOVED)


def test_rewrite_refuses_a_form_it_cannot_keep() -> None:
    """``import infra.cli`` binds ``infra``, which the wheel does not have: the build fails
    naming the line instead of shipping a module that breaks at run time."""
    with pytest.raises(hook.RewriteError, match=r"m\.py:2: 'import infra\.cli' binds 'infra'"):
        hook.rewrite_source("import os\nimport infra.cli\n", MOVED, "m.py")


def test_rewrite_ref() -> None:
    assert f"{NAMESPACE}.infra.cli:app" == hook.rewrite_ref("infra.cli:app", MOVED)
    assert "restate_lambda.testing.plugin" == hook.rewrite_ref(
        "restate_lambda.testing.plugin", MOVED
    )


# -- the built wheel ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built as ``pip wheel`` does."""
    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation]
    result = subprocess.run(
        [*command, "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    (built,) = out.glob("restate_lambda-*.whl")
    return built


def _source_files() -> set[str]:
    """Where each file of the source packages belongs in the wheel."""
    files = set()
    for package in ("restate_lambda", *RUNTIME):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(ROOT).as_posix()
                place = (
                    relative
                    if package == "restate_lambda"
                    else f"restate_lambda/_runtime/{relative}"
                )
                files.add(place)
    return files


def test_wheel_layout(wheel: Path) -> None:
    """One top-level package, every source file in its place, typed, licensed, and the
    console script and pytest plugin pointing into it."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(f"{DIST_INFO}/entry_points.txt").decode()
        metadata = zf.read(f"{DIST_INFO}/METADATA").decode()
        license_text = zf.read(f"{DIST_INFO}/licenses/LICENSE").decode()
    assert {"restate_lambda", DIST_INFO} == {name.split("/")[0] for name in names}
    packaged = {name for name in names if not name.startswith(DIST_INFO)}
    assert _source_files() | {"restate_lambda/_runtime/__init__.py"} == packaged
    assert "restate_lambda/py.typed" in names
    assert "restate_lambda/_runtime/backends/sqlite.sql" in names
    assert license_text.startswith("MIT License\n\nCopyright (c) 2026 restate-lambda contributors")
    assert "License-Expression: MIT" in metadata and "Classifier: Typing :: Typed" in metadata
    assert f"restate-lambda = {NAMESPACE}.infra.cli:app" in entry_points
    assert "restate_lambda = restate_lambda.testing.plugin" in entry_points


_MODULE_STRING = re.compile(rf"^({'|'.join(RUNTIME)})([.:]\w+)+$")


def test_wheel_modules_name_only_the_namespace(wheel: Path) -> None:
    """No shipped module imports a top-level runtime package or names one in a string."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.endswith(".py"):
                continue
            tree = ast.parse(zf.read(name), name)
            docstrings = hook._docstrings(tree)  # may mention ``infra.cli``
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.Constant) and id(node) not in docstrings:
                    modules = [node.value] if _MODULE_STRING.match(str(node.value)) else []
                else:
                    continue
                for module in modules:
                    if module.split(".")[0].split(":")[0] in RUNTIME:
                        problems.append(f"{name}:{getattr(node, 'lineno', '?')}: {module}")
    assert [] == problems


# Imported only when present (guarded), or from the standard library of later Pythons; and
# botocore, which boto3 (the aws extra) brings.
OPTIONAL_IMPORTS = {"backports", "compression", "zstandard", "botocore"}


def test_wheel_imports_only_declared_dependencies(wheel: Path) -> None:
    """Every third-party top-level module a shipped module imports comes from a distribution
    the wheel requires (core or an extra): a clean install can resolve it."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{DIST_INFO}/METADATA").decode()
        modules: dict[str, str] = {}
        for name in zf.namelist():
            if name.endswith(".py"):
                for node in ast.walk(ast.parse(zf.read(name), name)):
                    if isinstance(node, ast.Import):
                        tops = [alias.name.split(".")[0] for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        tops = [node.module.split(".")[0]]
                    else:
                        continue
                    for top in tops:
                        modules.setdefault(top, f"{name}:{node.lineno}")
    required = {
        re.split(r"[\s<>=!~;\[]", line.split(":", 1)[1].strip())[0].lower().replace("_", "-")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    providers = importlib.metadata.packages_distributions()
    undeclared = [
        f"{where}: {top} ({', '.join(providers.get(top, ['not installed']))})"
        for top, where in sorted(modules.items())
        if top not in sys.stdlib_module_names
        and top not in OPTIONAL_IMPORTS
        and top != "restate_lambda"
        and not {d.lower().replace("_", "-") for d in providers.get(top, [])} & required
    ]
    assert [] == undeclared


# -- installed into a clean venv, used from a project with its own infra/ -----------------------

USER_PACKAGES = ("infra", "backends", "invoker", "ingress")

CHECK = f"""
import asyncio, sys
import restate_lambda, restate_lambda.testing
from restate_lambda.testing import Harness
import infra, backends  # the project's own
from greeter import app

async def main():
    async with Harness("sqlite") as h:  # the SQLite schema is read from the package's files
        await h.mount(app)
        print(await h.call("Greeter", "greet", "Ada"))

asyncio.run(main())
for name in {USER_PACKAGES!r}:
    module = sys.modules.get(name)
    assert module is None or getattr(module, "MINE", False), (name, module)
assert infra.MINE and backends.MINE
print("checked")
"""


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain venv (no system site-packages) with the wheel and its dependencies installed."""
    if os.environ.get("RESTATE_LAMBDA_WHEEL_INSTALL") != "1":
        pytest.skip("installing into a clean venv takes 40-70 s: RESTATE_LAMBDA_WHEEL_INSTALL=1")
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(wheel)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stdout + result.stderr
    return venv


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: its own infra, backends, invoker and ingress packages and an app."""
    for name in USER_PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    shutil.copy(ROOT / "examples" / "greeter.py", tmp_path / "greeter.py")
    return tmp_path


def _env(project: Path) -> dict[str, str]:
    """The environment of a user's shell in ``project``: its packages importable, nothing of
    this checkout or its venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONPATH": str(project), "PYTHONUNBUFFERED": "1"}


def _run(venv: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
        env=_env(project),
        check=False,
    )


@pytest.mark.slow
def test_clean_venv_next_to_a_users_infra(installed: Path, project: Path) -> None:
    """The issue's failure (``No module named 'infra.testing'``, a broken console script) is
    gone: the testing harness, on SQLite, and the CLI work from a project with its own
    infra/backends/invoker/ingress, which stay the project's."""
    result = _run(installed, project, "python", "-c", CHECK)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "Hello, Ada!" in result.stdout and "checked" in result.stdout
    result = _run(installed, project, "restate-lambda", "--version")
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "restate-lambda 0.1.0" in result.stdout


def _imported(venv: Path, project: Path, statement: str) -> list[str]:
    """The modules ``statement`` imports in a fresh interpreter (``-X importtime``)."""
    result = _run(venv, project, "python", "-X", "importtime", "-c", statement)
    assert 0 == result.returncode, result.stderr
    # "import time: self [us] | cumulative | imported package", then one line per module
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return [line.rsplit("|", 1)[1].strip() for line in lines[1:]]


@pytest.mark.slow
def test_import_stays_light(installed: Path, project: Path) -> None:
    """``import restate_lambda`` loads no web stack, no AWS SDK and none of the runtime."""
    baseline = set(_imported(installed, project, "pass"))
    loaded = [
        m for m in _imported(installed, project, "import restate_lambda") if m not in baseline
    ]
    heavy = [
        m
        for m in loaded
        if m.split(".")[0] in {"boto3", "botocore", "starlette", "uvicorn", "httpx", *RUNTIME}
        or m.startswith(NAMESPACE)
    ]
    assert [] == heavy
    assert len(loaded) <= 10, loaded


@pytest.mark.slow
def test_dev_server_from_the_wheel(installed: Path, project: Path) -> None:
    """``restate-lambda dev greeter.py --reload`` (whose worker runs ``python -m`` from the
    project, where ``infra`` is the project's) serves the app: a call through its ingress."""
    ingress_port, admin_port = free_ports(2)
    process = subprocess.Popen(
        [str(installed / "bin" / "restate-lambda"), "dev", "greeter.py", "--reload",
         "--data-dir", str(project / ".data"), "--ingress-port", str(ingress_port),
         "--admin-port", str(admin_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=project,
        env=_env(project),
        start_new_session=True,
    )  # fmt: skip
    try:
        output = _read_until(process, "(ready)", timeout=60)
        response = httpx.post(
            f"http://127.0.0.1:{ingress_port}/Greeter/greet", json="Ada", timeout=30
        )
        assert 200 == response.status_code, response.text + output
        assert "Hello, Ada!" == json.loads(response.text)
    finally:
        _stop(process)


def _read_until(process: subprocess.Popen[bytes], text: str, timeout: float) -> str:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    output = ""
    deadline = time.monotonic() + timeout
    while text not in output:
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(left):
            raise AssertionError(f"no {text!r} within {timeout} s:\n{output}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"exited before {text!r}:\n{output}")
        output += chunk.decode("utf-8", "replace")
    return output


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (the reloader and its worker), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # a worker left behind
    if process.stdout is not None:
        process.stdout.close()
