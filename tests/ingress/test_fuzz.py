"""Fuzzing the ingress and admin APIs of an in-process runtime, driven by ``/openapi.json``.

A whole runtime (engine, memory backend, :mod:`tests.ingress.private_app` served in process,
the ingress app and the admin app with a token, as ``restate-lambda dev`` wires them) runs on an
event loop in a background thread. Hypothesis draws requests for every documented operation
(:mod:`tests.ingress.fuzzing`), then a fixed list of hostile requests follows: random-byte
paths, traversal in keys, NUL and unicode, forged ids, 33 MiB bodies, slow bodies, 200 headers.

Every answer must be below 500; every error a JSON body with a ``message`` (and, from the
ingress, ``code`` equal to the status); nothing may log a traceback or an ERROR; no request may
crash the app or hang. Afterwards the runtime still serves and the state the fuzzer must not
reach is unchanged: a counter key it never names, a suspended invocation whose awakeable it
cannot know, a private invocation's stored output, and the registered deployments.

The summary line ``fuzz: requests=N 5xx=0 tracebacks=0 crashes=0`` is printed by the last
test and in pytest's terminal summary (``tests/ingress/conftest.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from infra.testing import TestEnvironment
from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity
from ingress.ingress_app import create_ingress_app
from tests.ingress import private_app
from tests.ingress.fuzzing import FuzzRequest, Known, request_strategy

T = TypeVar("T")
TOKEN = "fuzz-admin-token"
JSON = {"content-type": "application/json"}
REQUEST_TIMEOUT_S = 10.0
#: Hypothesis examples per API table (bounded so the module runs in well under a minute).
EXAMPLES = 1500


@dataclass
class FuzzStats:
    """Counts over every request this module sends."""

    requests: int = 0
    server_errors: int = 0
    tracebacks: int = 0
    crashes: int = 0
    timeouts: int = 0
    bad_errors: int = 0
    unsendable: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The summary line."""
        return (
            f"fuzz: requests={self.requests} 5xx={self.server_errors} "
            f"tracebacks={self.tracebacks} crashes={self.crashes}"
        )

    def detail(self) -> str:
        """Statuses and the other counters."""
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return (
            f"fuzz: timeouts={self.timeouts} malformed_errors={self.bad_errors} "
            f"unsendable={self.unsendable} statuses {statuses}"
        )


STATS = FuzzStats()


class _TracebackCounter(logging.Handler):
    """Counts records logged with exception info or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class FuzzRuntime:
    """The runtime on its own event loop thread, plus what the fuzzer knows of it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.known = Known()
        self.logs = _TracebackCounter()
        self.env: TestEnvironment
        self.ingress: httpx.AsyncClient
        self.admin: httpx.AsyncClient
        self.awaiter_id = ""
        self.private_id = ""

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the runtime's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        """Engine, apps, the test handlers, and the state the fuzzer must not change."""
        self.env = TestEnvironment()
        await self.env.engine.start()
        await self.env.mount("fuzz", private_app.app)
        engine = self.env.engine
        self.ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_ingress_app(engine)),
            base_url="http://127.0.0.1:8080",
        )
        admin_app = create_admin_app(
            engine,
            ingress_endpoint="http://127.0.0.1:8080/",
            security=AdminSecurity.for_bind("127.0.0.1", TOKEN),
        )
        self.admin = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=admin_app), base_url="http://127.0.0.1:9070"
        )
        ok = await self.ingress.post("/Counter/sentinel/add", content=b"41", headers=JSON)
        assert ok.status_code == 200, ok.text
        sent = await self.ingress.post("/Awaiter/sentinel/wait_public/send")
        self.awaiter_id = sent.json()["invocationId"]
        r = await self.ingress.post("/Caller/send_private", content=b'"x"', headers=JSON)
        self.private_id = r.json()
        greet = await self.ingress.post(
            "/Greeter/greet", content=b'"a"', headers={**JSON, "idempotency-key": "k1"}
        )
        wf = await self.ingress.post(
            "/Caller/start_private_workflow", content=b'"k1"', headers=JSON
        )
        await self.env.settle()
        # Never the suspended awaiter: attaching to it would (rightly) wait forever.
        self.known.invocation_ids = [greet.headers["x-restate-id"], self.private_id, wf.json()]

    async def snapshot(self) -> dict[str, Any]:
        """What no fuzzed request may change."""
        engine = self.env.engine
        private = await engine.output(self.private_id)
        return {
            "sentinel": await engine.get_state("Counter", "sentinel"),
            "awaiter": (await engine.describe_invocation(self.awaiter_id))["status"],
            "private_output": private.value,
            "deployments": await engine.list_deployments(),
            "services": await engine.list_services(),
        }

    async def send(self, request: FuzzRequest) -> None:
        """Send one request and check its answer; every outcome is counted in STATS."""
        client = self.ingress if request.api == "ingress" else self.admin
        try:
            built = client.build_request(
                request.method,
                request.path,
                params=request.query,
                headers=[(k.encode(), v.encode("utf-8")) for k, v in request.headers.items()],
                content=request.body,
            )
        except (httpx.InvalidURL, UnicodeError, ValueError, TypeError):
            STATS.unsendable += 1  # the client cannot even express it: nothing reached the app
            return
        await self.check(request.describe(), client, built)

    async def check(
        self, what: str, client: httpx.AsyncClient, built: httpx.Request, api: str = ""
    ) -> httpx.Response | None:
        """Send ``built``; count 5xx, crashes, hangs and malformed error bodies."""
        api = api or ("ingress" if client is self.ingress else "admin")
        STATS.requests += 1
        try:
            response = await asyncio.wait_for(client.send(built), REQUEST_TIMEOUT_S)
        except TimeoutError:
            STATS.timeouts += 1
            STATS.problems.append(f"timeout: {what}")
            return None
        except Exception as exc:  # the app raised: a crash
            STATS.crashes += 1
            STATS.problems.append(f"crash {exc!r}: {what}")
            return None
        STATS.statuses[response.status_code] += 1
        if response.status_code >= 500:
            STATS.server_errors += 1
            STATS.problems.append(f"{response.status_code} {response.text[:200]}: {what}")
        elif response.status_code >= 400 and not _good_error(api, response):
            STATS.bad_errors += 1
            STATS.problems.append(f"bad error body {response.text[:200]!r}: {what}")
        return response


def _good_error(api: str, response: httpx.Response) -> bool:
    """A JSON object with a string ``message``; from the ingress also ``code`` == status."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return False
    return api == "admin" or body.get("code") == response.status_code


@pytest.fixture(scope="module")
def runtime() -> Iterator[FuzzRuntime]:
    """The runtime, its baseline state and a log handler counting tracebacks."""
    rt = FuzzRuntime()
    logging.getLogger().addHandler(rt.logs)
    try:
        rt.run(rt.start())
        yield rt
    finally:
        logging.getLogger().removeHandler(rt.logs)
        rt.run(_close(rt))
        rt.loop.call_soon_threadsafe(rt.loop.stop)
        rt.thread.join(10)


async def _close(rt: FuzzRuntime) -> None:
    await rt.ingress.aclose()
    await rt.admin.aclose()
    await rt.env.close()


@pytest.fixture(scope="module")
def baseline(runtime: FuzzRuntime) -> dict[str, Any]:
    """The protected state before any fuzzed request."""
    return runtime.run(runtime.snapshot())


@pytest.fixture(scope="module")
def document(runtime: FuzzRuntime) -> dict[str, Any]:
    """The OpenAPI document the runtime serves."""
    r = runtime.run(
        runtime.admin.get("/openapi.json", headers={"authorization": f"Bearer {TOKEN}"})
    )
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


_FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.parametrize("api", ["ingress", "admin"])
def test_fuzz_openapi_operations(
    runtime: FuzzRuntime, baseline: dict[str, Any], document: dict[str, Any], api: str
) -> None:
    """Requests drawn from the document's ``api`` operations (schema, known and hostile values)."""
    paths = {p: item for p, item in document["paths"].items() if item["x-api"] == api}
    strategy = request_strategy({"paths": paths}, runtime.known, TOKEN)

    @_FUZZ_SETTINGS
    @given(strategy)
    def one(request: FuzzRequest) -> None:
        runtime.run(runtime.send(request), timeout=REQUEST_TIMEOUT_S + 20)

    one()
    assert STATS.problems == [], "\n".join(STATS.problems[:20])


async def _chunks(total: int, size: int = 1 << 20, delay: float = 0.0) -> AsyncIterator[bytes]:
    """A JSON string body of ``total`` bytes, produced ``size`` bytes at a time."""
    yield b'"'
    left = total - 2
    while left > 0:
        n = min(size, left)
        if delay:
            await asyncio.sleep(delay)
        yield b"a" * n
        left -= n
    yield b'"'


async def _hostile(rt: FuzzRuntime) -> None:
    """Requests no schema describes."""
    ingress, admin = rt.ingress, rt.admin
    auth = {"authorization": f"Bearer {TOKEN}"}
    limit = 32 * 1024 * 1024
    cases: list[tuple[str, httpx.AsyncClient, httpx.Request, int | None]] = []

    def add(what: str, client: httpx.AsyncClient, request: httpx.Request, want: int | None) -> None:
        cases.append((what, client, request, want))

    # Huge bodies: announced, and chunked past the 32 MiB limit.
    add(
        "declared 33 MiB",
        ingress,
        ingress.build_request(
            "POST",
            "/Greeter/greet",
            content=b'"x"',
            headers={**JSON, "content-length": str(limit + 1)},
        ),
        413,
    )
    add(
        "chunked 33 MiB",
        ingress,
        ingress.build_request(
            "POST", "/Greeter/echo", content=_chunks(limit + (1 << 20)), headers=JSON
        ),
        413,
    )
    add(
        "admin 2 MiB",
        admin,
        admin.build_request("POST", "/query", content=_chunks(2 << 20), headers={**JSON, **auth}),
        413,
    )
    # A slow body (ten pauses) still arrives whole.
    add(
        "slow body",
        ingress,
        ingress.build_request(
            "POST", "/Greeter/echo", content=_chunks(10_000, 1000, 0.02), headers=JSON
        ),
        200,
    )
    # Header floods.
    many = [(f"x-h{i}".encode(), b"v") for i in range(200)] + [
        (b"content-type", b"application/json")
    ]
    add(
        "200 headers",
        ingress,
        ingress.build_request("POST", "/Greeter/greet", content=b'"x"', headers=many),
        431,
    )
    add(
        "1 MiB header",
        ingress,
        ingress.build_request("GET", "/restate/health", headers={"x-big": "a" * (1 << 20)}),
        431,
    )
    # Traversal, NUL and unicode in keys: other keys, never the sentinel's state.
    for key in (
        "..%2Fsentinel",
        "%2E%2E%2Fsentinel",
        "sentinel%00",
        "sentinel%2F..",
        "%C3%A9",
        "%F0%9F%98%80",
        "%ED%A0%80",
        "%FF%FE",
        "sentinel%20",
        "SENTINEL",
    ):
        add(
            f"key {key}",
            ingress,
            ingress.build_request("POST", f"/Counter/{key}/add", content=b"1", headers=JSON),
            None,
        )
        add(
            f"workflow {key}",
            ingress,
            ingress.build_request("GET", f"/restate/workflow/Hidden/{key}/output"),
            400,
        )
    # Forged ids of the right shape for the sentinel's neighbours.
    for raw in (b"\x00" * 24, b"\xff" * 24, bytes(range(24))):
        for index in (0, 1, 16, 17, 0xFFFFFFFF):
            awk = (
                "sign_1"
                + base64.urlsafe_b64encode(raw + index.to_bytes(4, "big")).rstrip(b"=").decode()
            )
            add(
                f"awakeable {awk}",
                ingress,
                ingress.build_request(
                    "POST", f"/restate/awakeables/{awk}/resolve", content=b'"x"', headers=JSON
                ),
                400 if index < 17 else 202,
            )
    # Random bytes as paths and bodies (seeded: the same bytes every run).
    rng = random.Random(20260926)
    for _ in range(60):
        data = rng.randbytes(rng.randint(1, 64))
        path = "/" + quote_from_bytes(data, safe="/%")
        add(
            f"path {data!r}",
            ingress,
            ingress.build_request(
                "POST", path, content=data, headers={"content-type": "application/json"}
            ),
            None,
        )
        add(
            f"admin path {data!r}",
            admin,
            admin.build_request("POST", path, content=data, headers={**JSON, **auth}),
            None,
        )
    # Admin: deep JSON, bad URIs, cross-site.
    for body in (b"[" * 2000 + b"]" * 2000, b'{"uri": "http://[::1"}', b'{"arn": "\x00"}'):
        add(
            "admin deployments",
            admin,
            admin.build_request("POST", "/deployments", content=body, headers={**JSON, **auth}),
            400,
        )
    add(
        "admin cross-site",
        admin,
        admin.build_request(
            "POST",
            "/deployments",
            content=b'{"uri":"http://127.0.0.1:9/"}',
            headers={"content-type": "text/plain", "origin": "http://evil.example", **auth},
        ),
        403,
    )

    for what, client, request, want in cases:
        response = await rt.check(what, client, request)
        if response is not None and want is not None and response.status_code != want:
            STATS.problems.append(f"{what}: wanted {want}, got {response.status_code}")


def test_hostile_inputs(runtime: FuzzRuntime, baseline: dict[str, Any]) -> None:
    """Requests outside the document: sizes, slowness, bytes, traversal, forged ids."""
    runtime.run(_hostile(runtime), timeout=300)
    assert STATS.problems == [], "\n".join(STATS.problems[:20])


def test_runtime_intact(runtime: FuzzRuntime, baseline: dict[str, Any]) -> None:
    """Still serving, protected state unchanged, no traceback logged; prints the summary."""
    runtime.run(runtime.env.settle())
    greet = runtime.run(runtime.ingress.post("/Greeter/greet", content=b'"still"', headers=JSON))
    assert greet.status_code == 200 and greet.json() == "Hello, still!"
    after = runtime.run(runtime.snapshot())
    assert json.dumps(after, default=repr, sort_keys=True) == json.dumps(
        baseline, default=repr, sort_keys=True
    )
    assert after["awaiter"] == "suspended"
    STATS.tracebacks = len(runtime.logs.records)
    print(STATS.line())
    print(STATS.detail())
    traces = [f"{r.name}: {r.getMessage()}" for r in runtime.logs.records[:10]]
    assert STATS.requests > 1000
    assert (STATS.server_errors, STATS.tracebacks, STATS.crashes, STATS.timeouts) == (0, 0, 0, 0), (
        traces + STATS.problems[:10]
    )
    assert STATS.bad_errors == 0, STATS.problems[:10]
