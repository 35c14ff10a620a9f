"""The README's test file, run as a user would: its own file, our pytest plugin, pytest-asyncio
in strict mode, no conftest of ours. A workflow with a one-day sleep is tested in under a
second, and crash_everywhere passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_test_file() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- readme-test:start -->\n```python\n(.*?)```\n<!-- readme-test:end -->", readme, re.S
    )
    assert block is not None, "the README lost its example test"
    return block.group(1)


def test_readme_example_runs_as_a_users_test_file(tmp_path: Path) -> None:
    (tmp_path / "test_reminder.py").write_text(readme_test_file())
    junit = tmp_path / "junit.xml"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    installed = {ep.name for ep in entry_points(group="pytest11")}
    if "restate_lambda" not in installed:  # an editable install older than the entry point
        args += ["-p", "restate_lambda.testing.plugin"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [*args, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, check=False
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
    times = {
        case.get("name"): float(case.get("time", "99"))
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert times["test_reminder_fires_after_one_day"] < 1.0, times
