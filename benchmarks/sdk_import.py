"""Import time of restate_lambda vs restate-sdk (``import restate``), each in fresh subprocesses.

Run: ``.venv/bin/python benchmarks/sdk_import.py [runs]``. Bytecode caches are warmed first
(``PYTHONPYCACHEPREFIX`` under /tmp, ``PYTHONDONTWRITEBYTECODE`` unset); the median of ``runs``
wall-clock times of ``python -c "import X"`` minus an empty interpreter is reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = "/tmp/restate-lambda-bench-pyc"


def wall_ms(code: str) -> float:
    """Wall time of one fresh interpreter running ``code``, in ms."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True)
    return (time.perf_counter() - t0) * 1000


def importtime_ms(module: str) -> float:
    """Cumulative ``-X importtime`` of ``module``, in ms."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    for line in reversed(out.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"no importtime line for {module}")


def main(runs: int = 15) -> None:
    """Print median import costs and the ratio."""
    for m in ("restate_lambda", "restate"):
        wall_ms(f"import {m}")  # warm the bytecode cache
    base = statistics.median(wall_ms("pass") for _ in range(runs))
    results = {}
    for m in ("restate_lambda", "restate"):
        wall = statistics.median(wall_ms(f"import {m}") for _ in range(runs)) - base
        it = statistics.median(importtime_ms(m) for _ in range(runs))
        results[m] = (wall, it)
        print(f"{m:15s} importtime {it:7.1f} ms   wall over bare interpreter {wall:7.1f} ms")
    ours, theirs = results["restate_lambda"], results["restate"]
    print(
        f"ratio restate-sdk / restate_lambda: importtime {theirs[1] / ours[1]:.1f}x, "
        f"wall {theirs[0] / max(ours[0], 0.1):.1f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
