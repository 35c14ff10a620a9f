"""Black-box chaos: ``kill -9`` of ``restate-lambda dev`` at random moments under a mixed load.

One run starts the official-SDK handlers of :mod:`tests.chaos.handlers` in their own process,
one or several ``restate-lambda dev`` engines on one store (SQLite: one engine; DynamoDB Local:
one or several sharing the table, as Lambda instances share it on AWS), and then, for a bounded
time, submits a mixed load through random engines (counter adds, multi-step runs, sleeps,
fan-out sends, workflows and the calls that complete their promises; every request carries an
idempotency key and a client retries it on another engine until it is acknowledged) while a
killer ``kill -9``\\ s a random engine every one to three seconds and restarts it.

Then every engine is up, and the run waits until every acknowledged invocation completed and
checks: nothing lost (an acknowledged invocation unknown), nothing stuck, no state update
applied twice (counters equal the adds and sends that completed), and every step that ran
twice explained by a kill between its two runs.

Short runs are part of the test suite (``tests/chaos/test_chaos.py``); a long one on demand::

    .venv/bin/python -m tests.chaos.run --storage dynamodb --engines 3 --duration 300 --jobs 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from restate_lambda.clock import SystemClock
from tests.support.processes import ManagedProcess, free_ports, http_ok, wait_until
from tests.support.runtimes import REPO_ROOT, _child_env, restate_lambda_argv

#: Engine settings that make a dead engine's leases end within seconds.
ENGINE_ENV = {
    "RESTATE_LAMBDA_ATTEMPT_TIMEOUT_S": "5",
    "RESTATE_LAMBDA_LEASE_MARGIN_MS": "2000",
    "RESTATE_LAMBDA_RECOVERY_GRACE_MS": "1000",
    "RESTATE_LAMBDA_OUTBOX_INITIAL_BACKOFF_MS": "200",
}


@dataclass
class ChaosConfig:
    """One chaos run."""

    storage: str = "sqlite"  # sqlite | dynamodb
    engines: int = 1
    duration_s: float = 20.0
    jobs: int = 300
    seed: int = 1
    settle_s: float = 120.0
    dynamodb_endpoint: str | None = None


@dataclass
class Report:
    """What a chaos run saw."""

    config: dict[str, Any]
    kills: int = 0
    kill_times: list[float] = field(default_factory=list)
    submitted: int = 0
    acknowledged: int = 0
    completed: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    reruns: int = 0
    unexplained_reruns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No violation."""
        return not (
            self.lost or self.stuck or self.doubled or self.unexplained_reruns or self.problems
        )

    def summary(self) -> str:
        """One line."""
        return (
            f"chaos {self.config['storage']} x{self.config['engines']}: kills={self.kills} "
            f"acknowledged={self.acknowledged}/{self.submitted} completed={self.completed} "
            f"lost={len(self.lost)} stuck={len(self.stuck)} doubled={len(self.doubled)} "
            f"step re-runs={self.reruns} (unexplained {len(self.unexplained_reruns)})"
        )


@dataclass
class _Job:
    """One planned request."""

    label: str
    path: str
    body: Any
    idem: str
    then: _Job | None = None  # sent once this one is acknowledged (workflow approvals)
    invocation_id: str | None = None
    output: Any = None


class _Engine:
    def __init__(self, n: int, workdir: Path, storage: str | None) -> None:
        ingress, admin = free_ports(2)
        self.ingress = f"http://127.0.0.1:{ingress}"
        self.admin = f"http://127.0.0.1:{admin}"
        argv = [
            *restate_lambda_argv(),
            "dev",
            "--ingress-port",
            str(ingress),
            "--admin-port",
            str(admin),
            "--data-dir",
            str(workdir / f"engine-{n}"),
        ]
        if storage is not None:
            argv += ["--storage", storage]
        self.process = ManagedProcess(
            f"engine-{n}",
            argv,
            workdir / f"engine-{n}.log",
            env=_child_env(ENGINE_ENV),
            cwd=REPO_ROOT,
        )
        self.up = False

    def start(self) -> None:
        self.process.start()
        wait_until(
            lambda: http_ok(f"{self.ingress}/restate/health") and http_ok(f"{self.admin}/health"),
            60,
            f"{self.process.name} health",
            process=self.process,
        )
        self.up = True

    def kill(self) -> None:
        self.up = False
        self.process.kill9()


async def run(config: ChaosConfig, workdir: Path) -> Report:
    """Run one chaos round (see the module docstring)."""
    rng = random.Random(config.seed)
    report = Report(config=asdict(config))
    effects = workdir / "effects"
    effects.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    sdk = ManagedProcess(
        "chaos-sdk",
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--keep-alive",
            "60",
            "--log-level",
            "warning",
            "tests.chaos.handlers:app",
        ],
        workdir / "sdk.log",
        env=_child_env({"CHAOS_EFFECTS_DIR": str(effects)}),
        cwd=REPO_ROOT,
    )
    storage = _storage_url(config, workdir)
    engines = [_Engine(n, workdir, storage) for n in range(config.engines)]
    try:
        sdk.start()
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, "sdk", process=sdk)
        for engine in engines:
            engine.start()
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                f"{engines[0].admin}/deployments",
                json={"uri": f"http://127.0.0.1:{port}", "use_http_11": True},
            )
            r.raise_for_status()
            jobs = _plan(config, rng)
            report.submitted = len(jobs) + sum(1 for j in jobs if j.then)
            kill_times: list[float] = []
            stop = asyncio.Event()
            killer = asyncio.ensure_future(_killer(engines, rng, stop, kill_times, config))
            await _submit(client, engines, jobs, rng, config)
            await killer  # kills until the duration is over
            stop.set()
            report.kills = len(kill_times)
            report.kill_times = kill_times
            for engine in engines:
                if not engine.up:
                    await asyncio.to_thread(engine.start)
            all_jobs = [*jobs, *(j.then for j in jobs if j.then)]
            acked = [j for j in all_jobs if j.invocation_id]
            report.acknowledged = len(acked)
            report.problems += [
                f"never acknowledged: {j.label}" for j in all_jobs if not j.invocation_id
            ]
            await _await_outputs(client, engines, acked, report, config.settle_s)
            await _await_quiet(client, engines[0], report, config.settle_s)
            await _check_counters(client, engines[0], jobs, report)
            _check_steps(effects, kill_times, report)
    finally:
        for engine in engines:
            engine.process.stop(grace=5)
        sdk.stop(grace=5)
    return report


def _storage_url(config: ChaosConfig, workdir: Path) -> str | None:
    if config.storage == "sqlite":
        if config.engines != 1:
            raise ValueError("SQLite runs use one engine (its data directory is locked)")
        return None
    if config.storage != "dynamodb" or not config.dynamodb_endpoint:
        raise ValueError("dynamodb runs need dynamodb_endpoint")
    table = f"chaos-{uuid.uuid4().hex[:12]}"
    url = f"dynamodb://{table}?region=us-east-1&endpoint_url={config.dynamodb_endpoint}"
    from tests.support.aws import aws_test_env

    aws_test_env()
    import subprocess

    subprocess.run(
        [*restate_lambda_argv(), "storage", "init", url],
        check=True,
        env=_child_env(),
        cwd=REPO_ROOT,
        capture_output=True,
    )
    return url


def _plan(config: ChaosConfig, rng: random.Random) -> list[_Job]:
    jobs: list[_Job] = []
    for n in range(config.jobs):
        kind = rng.choice(["add", "add", "steps", "nap", "fan", "flow"])
        if kind == "add":
            key = f"c{n % 8}"
            jobs.append(_Job(f"add {key} #{n}", f"/ChaosCounter/{key}/add/send", 1, f"add-{n}"))
        elif kind == "steps":
            jobs.append(
                _Job(f"steps #{n}", "/ChaosSteps/run/send", {"tag": f"steps-{n}", "n": 3}, f"s-{n}")
            )
        elif kind == "nap":
            ms = rng.randint(300, 1500)
            jobs.append(
                _Job(f"nap #{n}", "/ChaosSteps/nap/send", {"tag": f"nap-{n}", "ms": ms}, f"n-{n}")
            )
        elif kind == "fan":
            key = f"f{n % 4}"
            jobs.append(
                _Job(f"fan {key} #{n}", "/ChaosSteps/fan/send", {"key": key, "n": 5}, f"f-{n}")
            )
        else:
            wf = f"wf-{n}"
            approve = _Job(f"approve {wf}", f"/ChaosFlow/{wf}/approve/send", f"code-{n}", f"a-{n}")
            jobs.append(
                _Job(f"flow {wf}", f"/ChaosFlow/{wf}/main/send", wf, f"w-{n}", then=approve)
            )
    return jobs


async def _send(
    client: httpx.AsyncClient,
    engines: list[_Engine],
    job: _Job,
    rng: random.Random,
    deadline: float,
) -> None:
    """Send ``job`` through random live engines until one acknowledges it."""
    while time.monotonic() < deadline:
        live = [e for e in engines if e.up] or engines
        engine = rng.choice(live)
        try:
            r = await client.post(
                engine.ingress + job.path,
                content=json.dumps(job.body).encode(),
                headers={"content-type": "application/json", "idempotency-key": job.idem},
                timeout=10,
            )
            if r.status_code in (200, 202):
                job.invocation_id = r.json()["invocationId"]
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)


async def _submit(
    client: httpx.AsyncClient,
    engines: list[_Engine],
    jobs: list[_Job],
    rng: random.Random,
    config: ChaosConfig,
) -> None:
    deadline = time.monotonic() + config.duration_s + 60
    pause = config.duration_s * 0.8 / max(1, len(jobs))
    queue: asyncio.Queue[_Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            await _send(client, engines, job, rng, deadline)
            if job.invocation_id and job.then is not None:
                await asyncio.sleep(rng.uniform(0, 1))
                await _send(client, engines, job.then, rng, deadline)
            await asyncio.sleep(pause * 8)

    await asyncio.gather(*(worker() for _ in range(8)))


async def _killer(
    engines: list[_Engine],
    rng: random.Random,
    stop: asyncio.Event,
    kill_times: list[float],
    config: ChaosConfig,
) -> None:
    end = time.monotonic() + config.duration_s
    while not stop.is_set() and time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(1.0, 3.0))
        if stop.is_set():
            return
        victim = rng.choice(engines)
        kill_times.append(SystemClock().now_ms() / 1000)  # wall time, as the handlers record
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        await asyncio.to_thread(victim.start)


async def _await_outputs(
    client: httpx.AsyncClient,
    engines: list[_Engine],
    acked: list[_Job],
    report: Report,
    settle_s: float,
) -> None:
    pending = {j.invocation_id: j for j in acked}
    deadline = time.monotonic() + settle_s
    while pending and time.monotonic() < deadline:
        for inv_id, job in list(pending.items()):
            r = await client.get(f"{engines[0].ingress}/restate/invocation/{inv_id}/output")
            if r.status_code == 200:
                job.output = r.json() if r.content else None
                del pending[inv_id]
                report.completed += 1
            elif r.status_code == 404:
                report.lost.append(f"{job.label} ({inv_id})")
                del pending[inv_id]
            elif r.status_code not in (470, 409):
                report.completed += 1  # a terminal failure is an outcome too
                report.problems.append(
                    f"{job.label} ended with HTTP {r.status_code}: {r.text[:200]}"
                )
                del pending[inv_id]
        if pending:
            await asyncio.sleep(1.0)
    for inv_id, job in pending.items():
        report.stuck.append(f"{job.label} ({inv_id})")


async def _await_quiet(
    client: httpx.AsyncClient, engine: _Engine, report: Report, settle_s: float
) -> None:
    """Wait until no invocation is left unfinished: the sends of completed invocations (not
    acknowledged to any client) must have run too before counters are compared."""
    deadline = time.monotonic() + settle_s
    left: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = await client.get(f"{engine.admin}/invocations", params={"all": "false", "limit": 1000})
        left = (
            r.json()["invocations"]
            if r.status_code == 200
            else [{"status": f"HTTP {r.status_code}"}]
        )
        if not left:
            return
        await asyncio.sleep(1.0)
    for row in left[:20]:
        report.stuck.append(f"{row.get('target')} {row.get('id')} is {row.get('status')}")


async def _check_counters(
    client: httpx.AsyncClient, engine: _Engine, jobs: list[_Job], report: Report
) -> None:
    expected: dict[str, int] = {}
    for job in jobs:
        if job.path.startswith("/ChaosCounter/") and job.invocation_id:
            key = job.path.split("/")[2]
            expected[key] = expected.get(key, 0) + 1
        elif job.path == "/ChaosSteps/fan/send" and job.invocation_id:
            expected[job.body["key"]] = expected.get(job.body["key"], 0) + job.body["n"]
    for key, want in sorted(expected.items()):
        r = await client.post(f"{engine.ingress}/ChaosCounter/{key}/get", timeout=30)
        got = r.json() if r.status_code == 200 else None
        if got != want:
            report.doubled.append(f"counter {key}: {got}, expected {want}")
    for job in jobs:
        approval = job.then
        if (
            approval is not None
            and job.output is not None
            and job.output != f"confirmed {approval.body}"
        ):
            report.problems.append(f"{job.label} answered {job.output!r}")


def _check_steps(effects: Path, kill_times: list[float], report: Report) -> None:
    for path in sorted(effects.glob("*.log")):
        runs: dict[str, list[float]] = {}
        for line in path.read_text().splitlines():
            what, _, when = line.rpartition(" ")
            runs.setdefault(what, []).append(float(when))
        for what, times in runs.items():
            times.sort()
            for earlier, later in itertools.pairwise(times):
                report.reruns += 1
                # The first run may happen after the kill: the dead engine's request to the
                # handler was in flight (it takes at most the attempt timeout), and its result
                # was lost with the engine.
                window = float(ENGINE_ENV["RESTATE_LAMBDA_ATTEMPT_TIMEOUT_S"])
                if not any(earlier - window <= k <= later for k in kill_times):
                    report.unexplained_reruns.append(
                        f"{path.stem} {what}: ran at {earlier} and {later}"
                    )


def main(argv: list[str] | None = None) -> int:
    """Command line: one run; prints the report; exit status 1 on a violation."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--storage", choices=("sqlite", "dynamodb"), default="sqlite")
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load and kills")
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=SystemClock().now_ms() % 100_000)
    parser.add_argument("--dynamodb-endpoint", help="default: start DynamoDB Local")
    args = parser.parse_args(argv)
    endpoint = args.dynamodb_endpoint
    if args.storage == "dynamodb" and endpoint is None:
        from tests.support.aws import SERVERS

        endpoint = SERVERS.dynamodb()
    config = ChaosConfig(
        args.storage, args.engines, args.duration, args.jobs, args.seed, dynamodb_endpoint=endpoint
    )
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        report = asyncio.run(run(config, Path(tmp)))
    print(json.dumps(asdict(report), indent=2))
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
