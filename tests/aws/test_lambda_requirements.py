"""The Lambda functions' third-party imports are all in ``deploy/lambda/requirements.txt``.

``sam build`` installs only that file (plus the project's packages, symlinked), so a module a
function imports at start but the file does not name fails only once deployed, with
``No module named ...``. Each handler module of the template is imported in a fresh
interpreter; every third-party distribution it loads must be named in the file or be a
dependency of one that is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "deploy" / "lambda" / "requirements.txt"
OWN = {"restate_lambda", "backends", "ingress", "invoker", "infra", "examples"}

_PROBE = """
import importlib, json, sys
base = set(sys.modules)
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - base})))
"""


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` install, with their (non-extra) dependencies."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _handler_modules() -> list[str]:
    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
    out = set()
    for resource in template["Resources"].values():
        handler = (resource.get("Properties") or {}).get("Handler")
        if isinstance(handler, str):
            out.add(handler.rsplit(".", 1)[0])
    return sorted(out)


@pytest.mark.parametrize("module", _handler_modules())
def test_a_functions_imports_are_in_its_requirements(module: str) -> None:
    lines = REQUIREMENTS.read_text().splitlines()
    named = {_name(line) for line in lines if line.strip() and not line.startswith("#")}
    allowed = _closure(named)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    dists = metadata.packages_distributions()
    missing = {}
    for top in loaded:
        if top in OWN or top in sys.stdlib_module_names or top.startswith("_"):
            continue
        owners = {d.lower().replace("_", "-") for d in dists.get(top, [])}
        if owners and not owners & allowed:
            missing[top] = sorted(owners)
    assert not missing, f"{module} imports modules of {missing}, not in {REQUIREMENTS.name}"
