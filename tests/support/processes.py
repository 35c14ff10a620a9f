"""Child processes for end-to-end tests: own process group, log to a file, clean stop.

Only processes started here are ever signalled, always by their own process-group id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open together while choosing, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class ManagedProcess:
    """A subprocess in its own session (process group); stdout+stderr go to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # pgid == pid: started with start_new_session
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Also take down any stragglers left in the group after the leader exited.
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return text[-max_chars:]

    def fail(self, why: str) -> RuntimeError:
        return RuntimeError(
            f"{self.name}: {why}\n--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``check`` until it returns true; raise (with the process log) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.alive():
            raise process.fail(
                f"exited with {process.proc and process.proc.returncode} while waiting for {what}"
            )
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            if process is not None:
                raise process.fail(f"timed out after {timeout}s waiting for {what}")
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers 2xx."""
    r = httpx.get(url, timeout=timeout)
    return 200 <= r.status_code < 300
