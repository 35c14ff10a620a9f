"""``restate-lambda dev`` in a subprocess for the dev server and CLI tests."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.processes import free_ports

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the path."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``restate-lambda ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=ROOT,
        check=False,
    )


class DevServer:
    """A running ``restate-lambda dev``; stdout and stderr merged into :attr:`output`."""

    def __init__(self, data_dir: Path, *apps: str, extra: tuple[str, ...] = ()) -> None:
        self.ingress_port, self.admin_port = free_ports(2)
        self.ingress = f"http://127.0.0.1:{self.ingress_port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.output = ""
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.cli",
                "dev",
                *apps,
                "--data-dir",
                str(data_dir),
                "--ingress-port",
                str(self.ingress_port),
                "--admin-port",
                str(self.admin_port),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=cli_env(),
            cwd=ROOT,
        )

    def wait_for(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """Read output until ``text`` appears (at or past offset ``after``); AssertionError
        with the output if it does not."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while text not in self.output[after:]:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")
            chunk = os.read(fd, 65536)  # raw reads: no buffer hiding lines from select()
            if not chunk:
                raise AssertionError(f"exited before {text!r}:\n{self.output}")
            self.output += chunk.decode("utf-8", "replace")
        return self.output

    def drain(self) -> threading.Thread:
        """Keep reading the output into :attr:`output` in a thread, so that a server logging
        a lot (failing invocations retrying) never blocks on a full pipe. Call
        :meth:`wait_for` no more afterwards; read :attr:`output` instead."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()

        def read() -> None:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.output += chunk.decode("utf-8", "replace")

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self._drain = thread
        return thread

    def signal(self, sig: int = signal.SIGINT) -> None:
        """Send ``sig``."""
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit, collecting the rest of the output."""
        rest, _ = self.process.communicate(timeout=timeout)
        self.output += (rest or b"").decode("utf-8", "replace")
        return self.process.returncode

    def stop(self) -> None:
        """Stop it (gracefully, then for sure)."""
        drained = getattr(self, "_drain", None)
        if drained is not None:  # the thread reads the output: only wait for the exit
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            drained.join(5)
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.wait(5)
