"""``restate-lambda dev --reload``: restart the dev server when a served module changes.

A supervisor process runs the dev server as a child (the same command without ``--reload``)
and watches the directories of the served modules for changed ``.py`` files (watchfiles when
installed, else polling modification times). On a change it stops the child gracefully
(SIGTERM) and starts a new one: in-flight invocations are durable and resume in the new
process; a module that no longer imports is reported in one line and the supervisor waits for
the next change. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


def watched_dirs(specs: Sequence[str]) -> list[Path]:
    """The directories holding the served modules (each watched recursively)."""
    dirs: list[Path] = []
    for spec in specs:
        parent = Path(spec.partition(":")[0]).resolve().parent
        if not any(parent == d or d in parent.parents for d in dirs):
            dirs = [d for d in dirs if parent not in d.parents] + [parent]
    return dirs or [Path.cwd()]


def _python_changes_watchfiles(dirs: list[Path], stop: threading.Event) -> Iterator[set[str]]:
    import watchfiles

    for changes in watchfiles.watch(
        *dirs, watch_filter=watchfiles.PythonFilter(), stop_event=stop, raise_interrupt=False
    ):
        yield {path for _change, path in changes}


def _python_changes_polling(dirs: list[Path], stop: threading.Event) -> Iterator[set[str]]:
    def snapshot() -> dict[str, float]:
        out = {}
        for d in dirs:
            for path in d.rglob("*.py"):
                try:
                    out[str(path)] = path.stat().st_mtime
                except OSError:
                    continue
        return out

    before = snapshot()
    while not stop.wait(0.5):
        now = snapshot()
        changed = {p for p in set(before) | set(now) if before.get(p) != now.get(p)}
        before = now
        if changed:
            yield changed


def python_changes(dirs: list[Path], stop: threading.Event) -> Iterator[set[str]]:
    """Sets of changed ``.py`` files under ``dirs`` until ``stop`` is set."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:  # pragma: no cover - watchfiles is a dependency
        return _python_changes_polling(dirs, stop)
    return _python_changes_watchfiles(dirs, stop)


def _say(text: str) -> None:
    print(f"restate-lambda dev --reload: {text}", file=sys.stderr, flush=True)


def supervise(child_argv: list[str], specs: Sequence[str], shutdown_timeout: float) -> int:
    """Run ``child_argv`` and restart it whenever a watched module changes; returns the exit
    code of the last child when stopped by SIGINT/SIGTERM."""
    dirs = watched_dirs(specs)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if child.poll() is None:
            # the child runs in its own session (a terminal's Ctrl-C reaches only us): pass
            # each signal on once, so a second Ctrl-C forces the child out as it would alone
            child.send_signal(signum)

    _say("watching " + ", ".join(str(d) for d in dirs) + " for changes")
    child = subprocess.Popen(child_argv, start_new_session=True)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for changed in python_changes(dirs, stop):
            names = ", ".join(sorted(os.path.relpath(p) for p in changed)[:3])
            _say(f"{names} changed: restarting")
            _stop_child(child, shutdown_timeout)
            child = subprocess.Popen(child_argv, start_new_session=True)
        deadline = time.monotonic() + shutdown_timeout + 10
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.poll() is None:
            child.kill()
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_child(child: subprocess.Popen[bytes], shutdown_timeout: float) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(shutdown_timeout + 5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
