"""Side-by-side benchmark: our ``restate-lambda dev`` against the real ``restate-server``.

(One script, over 500 lines: a benchmark a user runs and reads top to bottom.)

One run starts, on 127.0.0.1 and free ports:

* one SDK process: ``benchmarks.bench_services:app`` (official ``restate-sdk`` 1.2 handlers) under
  uvicorn, one worker, HTTP/1.1 only, so the SDK answers discovery in request-response mode;
* ``restate-lambda dev`` (our runtime, SQLite in a temporary data dir);
* ``restate-server`` 1.7.12 (single node, temporary base dir).

The one SDK process is registered with both runtimes (``use_http_11``). Both runtimes stay up for
the whole row set; each measurement drives one of them while the other idles, and the order of
the two alternates from workload to workload.

That is the HTTP/1.1 row set (``h1``). The HTTP/2 row set (``h2``) starts everything again: the
same app under hypercorn (uvicorn cannot serve h2c), registered *without* ``use_http_11`` in a
fresh ``restate-lambda dev`` and a fresh ``restate-server``, so both reach it over h2c with prior
knowledge and the SDK runs in ``BIDI_STREAM`` mode (N steps in one request, each acknowledged as
it commits). The in-process row (``ours+sdk``) belongs to the HTTP/1.1 set only.

Workloads (all through the ingress, ``POST`` with a JSON body):

* ``greet``     ``Greeter/greet``      a Service returning a string;
* ``counter``   ``Counter/k<i%100>/add`` a VirtualObject ``add`` (state get + set) over 100 keys;
* ``hot-key``   ``Counter/hot/add``     the same handler, every call on one key (calls queue);
* ``5-step``    ``Steps/run`` with 5   five ``ctx.run`` steps (six round trips to the SDK per call
  in request-response mode on restate-server).

Per (workload, runtime): sequential latency (one client, after a warm-up) and throughput with 16
concurrent clients, each bounded in time; CPU of the runtime process group per 1000 calls during
the throughput phase; at the end the peak RSS (``VmHWM``) of every process. ``--rounds N`` measures
each workload N times on each runtime, the one that goes first alternating from round to round;
a ratio is then the median over the rounds of the ratio within each round (the two measurements
of a round are minutes apart at most, on the machine as it was then; on a shared machine one
round's throughput moves by a third from the next).

The load generator runs in this process: a raw asyncio keep-alive HTTP/1.1 client
(``invoker.http_client.HttpClient``), on uvloop when installed.

Usage::

    .venv/bin/python benchmarks/runtime_bench.py [--quick] [--only ours|restate] [--json out.json]
        [--sdk-server uvicorn|hypercorn] [--protocols h1,h2] [--workloads greet,5-step]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from invoker.http_client import HttpClient  # noqa: E402
from tests.support.processes import ManagedProcess, free_ports, http_ok, wait_until  # noqa: E402
from tests.support.runtimes import (  # noqa: E402
    START_TIMEOUT,
    RestateLambdaRuntime,
    RestateServerRuntime,
    Runtime,
    restate_server_bin,
)

CLIENTS = 16
JSON_HEADERS = {"content-type": "application/json"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Settings:
    warmup: int  # sequential calls before the measured sequential calls
    sequential: int  # measured sequential calls
    sequential_limit_s: float  # stop the sequential phase after this long
    concurrent: int  # calls in the throughput phase (CLIENTS clients)
    concurrent_limit_s: float  # stop the throughput phase after this long


FULL = Settings(
    warmup=50, sequential=300, sequential_limit_s=10, concurrent=3000, concurrent_limit_s=20
)
QUICK = Settings(
    warmup=10, sequential=40, sequential_limit_s=4, concurrent=200, concurrent_limit_s=5
)


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    describe: str
    request: Callable[[int], tuple[str, bytes]]  # call number -> (path, JSON body)


WORKLOADS = [
    Workload("greet", "Greeter/greet (Service)", lambda i: ("/Greeter/greet", b'"bench"')),
    Workload("counter", "Counter/<100 keys>/add", lambda i: (f"/Counter/k{i % 100}/add", b"1")),
    Workload("hot-key", "Counter/hot/add (1 key)", lambda i: ("/Counter/hot/add", b"1")),
    Workload("5-step", "Steps/run, 5 x ctx.run", lambda i: ("/Steps/run", b"5")),
]


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (our children run in their own sessions)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live member, plus what reaped children left in cutime+cstime."""
    ticks = 0
    for pid in group_members(pgid):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def _status(pid: int) -> dict[str, str]:
    out = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def group_peak_rss(pgid: int) -> list[tuple[int, str, float]]:
    """``(pid, command, VmHWM MiB)`` of every live member of the group."""
    rows = []
    for pid in group_members(pgid):
        st = _status(pid)
        kib = int(st.get("VmHWM", "0 kB").split()[0])
        rows.append((pid, st.get("Name", "?"), kib / 1024))
    return rows


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Measurement:
    workload: str
    runtime: str
    protocol: str = "h1"  # h1: HTTP/1.1 request-response; h2: h2c, BIDI_STREAM
    seq_calls: int = 0
    seq_p50_ms: float = 0.0
    seq_p99_ms: float = 0.0
    seq_mean_ms: float = 0.0
    conc_calls: int = 0
    conc_seconds: float = 0.0
    conc_rps: float = 0.0
    conc_p50_ms: float = 0.0
    conc_p99_ms: float = 0.0
    errors: int = 0
    first_error: str = ""
    runtime_cpu_s_per_1k: float = 0.0  # runtime process group, throughput phase
    sdk_cpu_s_per_1k: float = 0.0  # SDK process, throughput phase
    loadgen_cpu_s_per_1k: float = 0.0  # this process, throughput phase
    #: cores the other runtimes (meant to idle) used during the throughput phase
    idle_cores: float = 0.0
    check: str = ""
    round: int = 1  # which of the ``--rounds`` measurements of this workload and runtime


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


@dataclass(slots=True)
class _Counts:
    ok: int = 0
    errors: int = 0
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)


async def _call(client: HttpClient, base: str, wl: Workload, i: int, counts: _Counts) -> None:
    path, body = wl.request(i)
    t0 = time.perf_counter()
    try:
        resp = await client.request("POST", base + path, JSON_HEADERS, body, timeout=30)
    except Exception as exc:
        counts.errors += 1
        counts.first_error = counts.first_error or f"{type(exc).__name__}: {exc}"
        return
    if resp.status != 200:
        counts.errors += 1
        counts.first_error = counts.first_error or f"HTTP {resp.status}: {resp.body[:200]!r}"
        return
    counts.ok += 1
    counts.latencies_ms.append((time.perf_counter() - t0) * 1000)


async def measure(
    client: HttpClient,
    rt_name: str,
    protocol: str,
    base: str,
    rt_pgid: int,
    sdk_pgid: int,
    wl: Workload,
    s: Settings,
    idle_pgids: tuple[int, ...] = (),
) -> tuple[Measurement, int]:
    """Sequential then concurrent phase of ``wl`` against the ingress at ``base``; returns the
    measurement and the number of successful calls made (all phases)."""
    m = Measurement(wl.name, rt_name, protocol)
    i = 0
    warm = _Counts()
    for _ in range(s.warmup):
        await _call(client, base, wl, i, warm)
        i += 1

    seq = _Counts()
    deadline = time.perf_counter() + s.sequential_limit_s
    for _ in range(s.sequential):
        if time.perf_counter() > deadline:
            break
        await _call(client, base, wl, i, seq)
        i += 1
    lat = sorted(seq.latencies_ms)
    m.seq_calls = seq.ok
    m.seq_p50_ms, m.seq_p99_ms = _pct(lat, 0.50), _pct(lat, 0.99)
    m.seq_mean_ms = sum(lat) / len(lat) if lat else float("nan")

    conc = _Counts()
    issued = 0
    start_i = i

    async def worker() -> None:
        nonlocal issued
        while issued < s.concurrent and time.perf_counter() < conc_deadline:
            n = start_i + issued
            issued += 1
            await _call(client, base, wl, n, conc)

    rt_cpu0, sdk_cpu0, me0 = (
        group_cpu_seconds(rt_pgid),
        group_cpu_seconds(sdk_pgid),
        time.process_time(),
    )
    idle0 = sum(group_cpu_seconds(p) for p in idle_pgids)
    t0 = time.perf_counter()
    conc_deadline = t0 + s.concurrent_limit_s
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - t0
    rt_cpu, sdk_cpu, me = (
        group_cpu_seconds(rt_pgid) - rt_cpu0,
        group_cpu_seconds(sdk_pgid) - sdk_cpu0,
        time.process_time() - me0,
    )
    idle = sum(group_cpu_seconds(p) for p in idle_pgids) - idle0
    m.idle_cores = idle / elapsed if elapsed > 0 else 0.0
    lat = sorted(conc.latencies_ms)
    m.conc_calls, m.conc_seconds = conc.ok, elapsed
    m.conc_rps = conc.ok / elapsed if elapsed > 0 else 0.0
    m.conc_p50_ms, m.conc_p99_ms = _pct(lat, 0.50), _pct(lat, 0.99)
    calls = max(1, conc.ok)
    m.runtime_cpu_s_per_1k = rt_cpu / calls * 1000
    m.sdk_cpu_s_per_1k = sdk_cpu / calls * 1000
    m.loadgen_cpu_s_per_1k = me / calls * 1000
    m.errors = warm.errors + seq.errors + conc.errors
    m.first_error = warm.first_error or seq.first_error or conc.first_error
    return m, warm.ok + seq.ok + conc.ok


async def counter_sum(client: HttpClient, base: str, keys: list[str]) -> int | str:
    """Sum of ``Counter/<key>/get`` over ``keys`` (an error text if a call fails)."""
    total = 0
    for key in keys:
        # No body and no content-type: the shared handler takes no input.
        resp = await client.request("POST", f"{base}/Counter/{key}/get", {}, b"", timeout=30)
        if resp.status != 200:
            return f"GET {key}: HTTP {resp.status} {resp.body[:200]!r}"
        total += int(json.loads(resp.body) or 0)
    return total


# --------------------------------------------------------------------------- processes


class SdkProcess:
    """``benchmarks.bench_services:app`` in its own process, one worker, 127.0.0.1: uvicorn
    (httptools and uvloop when installed) or hypercorn (as the e2e tests serve it). Without TLS
    there is no ALPN: a client speaks HTTP/1.1 unless it opens with the h2c preface (prior
    knowledge), which hypercorn accepts on the same port (``http2``: check that it does)."""

    def __init__(self, workdir: Path, server: str = "uvicorn", *, http2: bool = False) -> None:
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http2 = http2
        app = "benchmarks.bench_services:app"
        if http2 and server != "hypercorn":
            raise ValueError("h2c needs hypercorn (uvicorn serves HTTP/1.1 only)")
        if server == "hypercorn":
            argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}"]
            argv += ["--workers", "1", "--keep-alive", "75", "--log-level", "warning"]
            argv += ["--worker-class", "uvloop" if _importable("uvloop") else "asyncio", app]
            self.describe = "hypercorn, 1 worker" + (", h2c" if http2 else "")
        else:
            http_impl = "httptools" if _importable("httptools") else "h11"
            loop_impl = "uvloop" if _importable("uvloop") else "asyncio"
            argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1"]
            argv += ["--port", str(self.port), "--http", http_impl, "--loop", loop_impl]
            argv += ["--timeout-keep-alive", "75", "--no-access-log", "--log-level", "warning"]
            self.describe = f"uvicorn --http {http_impl} --loop {loop_impl}, 1 worker"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        self.process = ManagedProcess(
            "sdk-app", argv, workdir / "sdk-app.log", env=env, cwd=REPO_ROOT
        )

    def start(self) -> None:
        self.process.start()
        wait_until(
            lambda: http_ok(f"{self.url}/health"),
            START_TIMEOUT,
            "SDK app /health",
            process=self.process,
        )
        # Discovery over the protocol the runtimes will use: the SDK answers REQUEST_RESPONSE
        # over HTTP/1.1 and BIDI_STREAM over HTTP/2.
        with httpx.Client(http1=not self.http2, http2=self.http2, timeout=5) as client:
            resp = client.get(
                f"{self.url}/discover",
                headers={"accept": "application/vnd.restate.endpointmanifest.v4+json"},
            )
        expected = ("HTTP/2", "BIDI_STREAM") if self.http2 else ("HTTP/1.1", "REQUEST_RESPONSE")
        got = (resp.http_version, resp.json().get("protocolMode"))
        if got != expected:
            raise self.process.fail(f"SDK discovery answered {got}, expected {expected}")

    def stop(self) -> None:
        # Stateless; uvicorn here does not always act on SIGTERM, so do not wait for it.
        self.process.kill9()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def make_ours(workdir: Path) -> Runtime:
    rt = RestateLambdaRuntime(workdir)
    rt.process.argv += ["--log-level", "WARNING"]
    rt.name = "ours"
    return rt


def make_ours_inprocess(workdir: Path) -> Runtime:
    """Our runtime serving the same handlers written with our SDK, in process (no HTTP hop).

    The module is ``bench_services.py`` with only its imports changed (the porting promise).
    """
    inproc = workdir / "inprocess"
    inproc.mkdir()
    source = (REPO_ROOT / "benchmarks" / "bench_services.py").read_text()
    ported = inproc / "bench_services_ours.py"
    ported.write_text(
        source.replace("import restate\n", "import restate_lambda as restate\n").replace(
            "from restate import ", "from restate_lambda import "
        )
    )
    rt = RestateLambdaRuntime(inproc)
    rt.process.argv += [str(ported)]
    rt.process.argv += ["--log-level", "WARNING"]
    rt.name = "ours+sdk"
    return rt


def make_restate(workdir: Path) -> Runtime:
    binary = restate_server_bin()
    if binary is None:
        raise SystemExit(
            "restate-server not found: set RESTATE_SERVER_BIN or install it in "
            "<repo>/.tools (see scripts/)"
        )
    rt = RestateServerRuntime(binary, workdir)
    rt.name = "restate"
    return rt


def restate_server_version() -> str:
    binary = restate_server_bin()
    if binary is None:
        return "?"
    pkg = Path(binary).resolve().parent.parent / "package.json"
    with contextlib.suppress(OSError, ValueError):
        return str(json.loads(pkg.read_text()).get("version", "?"))
    return "?"


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total": mem_total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
        "restate_server_version": restate_server_version(),
    }


def _f(x: float, nd: int = 1) -> str:
    return "-" if x != x else f"{x:,.{nd}f}"  # NaN -> "-"


def format_table(results: list[Measurement]) -> str:
    several = any(m.round > 1 for m in results)
    w = 11 if several else 8  # runtime, or runtime/round
    head = (
        f"{'workload':9} {'http':4} {'runtime':{w}} {'seq p50':>8} {'seq p99':>8} "
        f"{'req/s@16':>9} {'p50@16':>7} {'p99@16':>7} {'rt CPU':>7} {'sdk CPU':>7} {'errors':>6}"
        "  check"
    )
    units = (
        f"{'':9} {'':4} {'':{w}} {'ms':>8} {'ms':>8} {'':>9} {'ms':>7} {'ms':>7} "
        f"{'s/1k':>7} {'s/1k':>7} {'':>6}"
    )
    lines = [head, units, "-" * len(head)]
    for m in results:
        name = f"{m.runtime}/{m.round}" if several else m.runtime
        lines.append(
            f"{m.workload:9} {m.protocol:4} {name:{w}} {_f(m.seq_p50_ms, 2):>8} "
            f"{_f(m.seq_p99_ms, 2):>8} "
            f"{_f(m.conc_rps, 0):>9} {_f(m.conc_p50_ms):>7} {_f(m.conc_p99_ms):>7} "
            f"{_f(m.runtime_cpu_s_per_1k, 2):>7} {_f(m.sdk_cpu_s_per_1k, 2):>7} "
            f"{m.errors:>6}  {m.check}"
        )
    return "\n".join(lines)


def ratios(results: list[Measurement]) -> list[dict[str, Any]]:
    """Ours over restate-server per workload and protocol: with several rounds, each metric's
    median over the rounds of the ratio within the round (the two measurements of a round run
    next to each other, on the machine as it was then), and every round's throughput ratio."""
    by: dict[tuple[str, str, str], dict[int, Measurement]] = {}
    for m in results:
        by.setdefault((m.workload, m.runtime, m.protocol), {})[m.round] = m
    out = []
    combos = [
        (wl, ours, proto)
        for proto in ("h1", "h2")
        for ours in ("ours", "ours+sdk")
        for wl in WORKLOADS
    ]
    for wl, ours, proto in combos:
        a, b = by.get((wl.name, ours, proto), {}), by.get((wl.name, "restate", proto), {})
        pairs = [(a[n], b[n]) for n in sorted(a) if n in b]
        if not pairs:
            continue

        def r(field: str, pairs: list[tuple[Measurement, Measurement]] = pairs) -> list[float]:
            return [
                getattr(x, field) / getattr(y, field) if getattr(y, field) else float("nan")
                for x, y in pairs
            ]

        rps = r("conc_rps")
        out.append(
            {
                "workload": wl.name if ours == "ours" else f"{wl.name}*",
                "protocol": proto,
                "rounds": len(pairs),
                "seq_p50": statistics.median(r("seq_p50_ms")),
                "seq_p99": statistics.median(r("seq_p99_ms")),
                "rps": statistics.median(rps),
                "rps_by_round": rps,
                "cpu_per_call": statistics.median(r("runtime_cpu_s_per_1k")),
            }
        )
    return out


def format_ratios(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        "ratios ours / restate-server (latency, CPU: < 1 is better for ours; "
        "req/s: > 1 is better for ours)",
        f"{'workload':9} {'http':4} {'seq p50':>8} {'seq p99':>8} {'req/s@16':>9} "
        f"{'rt CPU/call':>11}",
    ]
    if any(row["workload"].endswith("*") for row in rows):
        lines[0] += "\n  (* = ours+sdk: restate-lambda with its own SDK in process)"
    rounds = max(row["rounds"] for row in rows)
    if rounds > 1:
        lines[0] += (
            f"\n  ({rounds} rounds: the median of the ratios within each round; "
            "every round's req/s ratio on the right)"
        )
        lines[1] += "  req/s ratio by round"
    for row in rows:
        line = (
            f"{row['workload']:9} {row['protocol']:4} {_f(row['seq_p50'], 2):>8} "
            f"{_f(row['seq_p99'], 2):>8} "
            f"{_f(row['rps'], 2):>9} {_f(row['cpu_per_call'], 2):>11}"
        )
        if rounds > 1:
            line += "  " + " ".join(_f(x, 2) for x in row["rps_by_round"])
        lines.append(line)
    return "\n".join(lines)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the ``finally`` blocks stop every child process."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def run_all(
    runtimes: list[Runtime],
    sdk: SdkProcess,
    s: Settings,
    protocol: str,
    workloads: list[Workload],
    rounds: int = 1,
) -> list[Measurement]:
    client = HttpClient(max_idle_per_origin=4 * CLIENTS)
    results: list[Measurement] = []
    #: adds so far per (runtime, workload): successful, failed at the client
    adds: dict[tuple[str, str], tuple[int, int]] = {}
    try:
        for w, wl in enumerate(workloads):
            for r in range(rounds):
                # the runtime measured first alternates from round to round and workload to
                # workload, so that neither always meets the machine as the other left it
                order = runtimes if (w + r) % 2 == 0 else list(reversed(runtimes))
                for rt in order:
                    m = await _measure_one(client, rt, runtimes, sdk, s, protocol, wl, adds)
                    m.round = r + 1
                    results.append(m)
    finally:
        await client.close()
    return results


async def _measure_one(
    client: HttpClient,
    rt: Runtime,
    runtimes: list[Runtime],
    sdk: SdkProcess,
    s: Settings,
    protocol: str,
    wl: Workload,
    adds: dict[tuple[str, str], tuple[int, int]],
) -> Measurement:
    assert rt.process.pid is not None and sdk.process.pid is not None
    log(f"  {wl.name:8} on {rt.name:8} ({protocol}) ...")
    m, ok_calls = await measure(
        client,
        rt.name,
        protocol,
        rt.ingress_url,
        rt.process.pid,
        sdk.process.pid,
        wl,
        s,
        tuple(o.process.pid for o in runtimes if o is not rt and o.process.pid),
    )
    if wl.name in ("counter", "hot-key"):
        # Each runtime starts empty and these keys serve one workload only (in every round).
        # An add that failed at the client (a timeout, say) may still have been applied.
        done, failed = adds.get((rt.name, wl.name), (0, 0))
        done, failed = adds[(rt.name, wl.name)] = (done + ok_calls, failed + m.errors)
        keys = [f"k{k}" for k in range(100)] if wl.name == "counter" else ["hot"]
        got = await counter_sum(client, rt.ingress_url, keys)
        if got == done:
            m.check = "ok"
        elif isinstance(got, int) and done < got <= done + failed:
            m.check = f"ok ({got - done} of {failed} failed adds applied)"
        else:
            m.check = (
                f"MISMATCH: sum of counters {got}, successful adds {done}, failed adds {failed}"
            )
    if m.errors:
        m.check = (m.check + "; " if m.check else "") + f"first error: {m.first_error}"
    log(
        f"    seq p50 {_f(m.seq_p50_ms, 2)} ms, {_f(m.conc_rps, 0)} req/s @16, "
        f"runtime CPU {_f(m.runtime_cpu_s_per_1k, 2)} s/1k, errors {m.errors}, "
        f"idle runtimes {_f(m.idle_cores, 2)} cores"
    )
    return m


def _new_loop() -> asyncio.AbstractEventLoop:
    if _importable("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


RssRows = list[tuple[int, str, float]]


def run_row_set(
    protocol: str,
    args: argparse.Namespace,
    settings: Settings,
    workloads: list[Workload],
    workdir: Path,
) -> tuple[list[Measurement], dict[str, RssRows], str]:
    """Start the SDK process and the runtimes for one row set, register, measure, stop.

    Returns the measurements, the peak RSS of every process group (names suffixed with the
    protocol) and a description of the SDK process."""
    http2 = protocol == "h2"
    setdir = workdir / protocol
    setdir.mkdir()
    sdk = SdkProcess(setdir, "hypercorn" if http2 else args.sdk_server, http2=http2)
    runtimes: list[Runtime] = []
    if args.only in (None, "ours"):
        runtimes.append(make_ours(setdir))
    if args.only in (None, "restate"):
        runtimes.append(make_restate(setdir))
    inprocess = None
    if args.only in (None, "ours") and not args.no_inprocess and not http2:
        inprocess = make_ours_inprocess(setdir)
    results: list[Measurement] = []
    rss: dict[str, RssRows] = {}
    try:
        log(f"[{protocol}] starting the SDK app ({sdk.describe}) and the runtimes ...")
        t0 = time.monotonic()
        sdk.start()
        for rt in runtimes:
            rt.start()
            rt.register(sdk.url, use_http_11=not http2)
        if inprocess is not None:
            inprocess.start()  # serves its handlers in process: nothing to register
            runtimes.append(inprocess)
        log(f"[{protocol}] ready after {time.monotonic() - t0:.1f} s; measuring")
        loop = _new_loop()
        try:
            results = loop.run_until_complete(
                run_all(runtimes, sdk, settings, protocol, workloads, args.rounds)
            )
        finally:
            loop.close()
        for rt in runtimes:
            assert rt.process.pid is not None
            rss[f"{rt.name} ({protocol})"] = group_peak_rss(rt.process.pid)
        assert sdk.process.pid is not None
        rss[f"sdk ({protocol})"] = group_peak_rss(sdk.process.pid)
    finally:
        for rt in runtimes:
            rt.process.stop(grace=5)
        sdk.stop()
    return results, rss, sdk.describe


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--only", choices=("ours", "restate"), help="run one runtime only")
    parser.add_argument(
        "--no-inprocess",
        action="store_true",
        help="skip ours+sdk (restate-lambda with restate_lambda handlers in process)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each workload this many times on each runtime, alternating which goes "
        "first; ratios are the median over the rounds (default 1)",
    )
    parser.add_argument(
        "--sdk-server",
        choices=("uvicorn", "hypercorn"),
        default="uvicorn",
        help="ASGI server of the SDK process in the HTTP/1.1 row set (default uvicorn; "
        "the HTTP/2 row set always uses hypercorn)",
    )
    parser.add_argument(
        "--protocols",
        default="h1,h2",
        help="row sets, comma-separated: h1 (HTTP/1.1 request-response), h2 (h2c, BIDI_STREAM)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(wl.name for wl in WORKLOADS),
        help="workloads, comma-separated (default: all)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols or any(p not in ("h1", "h2") for p in protocols):
        parser.error("--protocols takes h1, h2 or h1,h2")
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    workloads = [wl for wl in WORKLOADS if wl.name in wanted]
    if len(workloads) != len(wanted):
        parser.error(f"--workloads: known are {', '.join(wl.name for wl in WORKLOADS)}")
    if args.rounds < 1:
        parser.error("--rounds takes a positive number")

    info = machine_info()
    print(
        f"machine: nproc={info['nproc']}  cpu={info['cpu_model']}  mem={info['mem_total']}  "
        f"python={info['python']}  loadavg(1/5/15 min) at start="
        + "/".join(f"{x:.2f}" for x in info["loadavg_at_start"])
    )
    print(
        f"restate-server {info['restate_server_version']} vs restate-lambda dev (SQLite); "
        f"row sets: {', '.join(protocols)} (h1: one SDK process, restate-sdk under "
        f"{args.sdk_server}, registered with use_http_11 in both; h2: restate-sdk under "
        f"hypercorn, registered without use_http_11 in both, h2c BIDI_STREAM); "
        f"{'quick' if args.quick else 'full'} mode: warm-up {settings.warmup}, "
        f"sequential {settings.sequential} (<= {settings.sequential_limit_s:g} s), "
        f"{CLIENTS} clients x {settings.concurrent} calls (<= {settings.concurrent_limit_s:g} s)"
        + (f"; {args.rounds} rounds" if args.rounds > 1 else ""),
        flush=True,
    )

    started = time.monotonic()
    results: list[Measurement] = []
    rss: dict[str, RssRows] = {}
    sdk_describe: dict[str, str] = {}
    loadavg: dict[str, tuple[float, float, float]] = {}
    with _terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix="runtime-bench-") as tmp:
        for protocol in protocols:
            loadavg[protocol] = os.getloadavg()
            got, got_rss, describe = run_row_set(protocol, args, settings, workloads, Path(tmp))
            results += got
            rss.update(got_rss)
            sdk_describe[protocol] = describe

    print()
    print(format_table(results))
    print()
    ratio_rows = ratios(results)
    if ratio_rows:
        print(format_ratios(ratio_rows))
        print()
    print("peak RSS (VmHWM at the end, every live process of the group):")
    for name, rows in rss.items():
        total = sum(r[2] for r in rows)
        parts = ", ".join(f"{cmd}[{pid}] {mib:.0f} MiB" for pid, cmd, mib in rows)
        print(f"  {name:14} {total:7.0f} MiB  ({parts})")
    print(
        "load average (1/5/15 min) at the start of each row set: "
        + ", ".join(f"{p} " + "/".join(f"{x:.2f}" for x in la) for p, la in loadavg.items())
    )
    print(
        "load generator CPU (this process, throughput phases): "
        + ", ".join(
            f"{m.workload}/{m.runtime}/{m.protocol}"
            + (f"/{m.round}" if args.rounds > 1 else "")
            + f" {m.loadgen_cpu_s_per_1k:.2f}"
            for m in results
        )
        + " s/1k calls"
    )
    print(f"total wall time {time.monotonic() - started:.0f} s")

    if args.json:
        payload = {
            "machine": info,
            "mode": "quick" if args.quick else "full",
            "settings": asdict(settings),
            "clients": CLIENTS,
            "sdk_server": sdk_describe,
            "loadavg_at_row_set_start": loadavg,
            "results": [asdict(m) for m in results],
            "ratios_ours_over_restate": ratio_rows,
            "peak_rss_mib": {
                name: [{"pid": p, "command": c, "vmhwm_mib": v} for p, c, v in rows]
                for name, rows in rss.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 1 if any(m.errors or m.check.startswith("MISMATCH") for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
