"""Every example behind ``restate-lambda dev`` (the dev server mounts its ``app`` in process)."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ManagedProcess, free_ports, wait_until
from tests.support.runtimes import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
NAMES = ["greeter", "counter", "checkout", "saga", "fanout"]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One dev server with every example mounted."""
    work = tmp_path_factory.mktemp("examples")
    ingress, admin = free_ports(2)
    proc = ManagedProcess(
        "restate-lambda",
        [
            str(REPO_ROOT / ".venv" / "bin" / "restate-lambda"),
            "dev",
            *[str(EXAMPLES / f"{n}.py") for n in NAMES],
            "--ingress-port",
            str(ingress),
            "--admin-port",
            str(admin),
            "--data-dir",
            str(work / "data"),
            "--log-level",
            "WARNING",
        ],
        work / "dev.log",
        cwd=REPO_ROOT,
    )
    proc.start()
    url = f"http://127.0.0.1:{ingress}"
    try:
        wait_until(
            lambda: httpx.post(f"{url}/Greeter/greet", json="x", timeout=5).status_code == 200,
            60,
            "examples routable",
            process=proc,
        )
        yield url
    finally:
        proc.stop(grace=5)


def post(url: str, body: Any = None) -> httpx.Response:
    return httpx.post(url, json=body, timeout=30)


@pytest.mark.parametrize("name", NAMES)
def test_example_has_docstring_and_app(name: str) -> None:
    """Each example documents itself and exposes ``app``."""
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    assert ast.get_docstring(tree)
    assert any(
        isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "app" for t in n.targets)
        for n in tree.body
    )


def test_greeter(dev: str) -> None:
    """Greeter greets."""
    assert post(f"{dev}/Greeter/greet", "Ada").json() == "Hello, Ada!"


def test_counter(dev: str) -> None:
    """Counter keeps state per key."""
    assert post(f"{dev}/Counter/c1/add", 5).json() == 5
    assert post(f"{dev}/Counter/c1/add", 2).json() == 7
    assert post(f"{dev}/Counter/c1/get").json() == 7
    assert post(f"{dev}/Counter/c2/get").json() == 0


def test_checkout(dev: str) -> None:
    """Checkout waits for the payment awakeable and the approval promise."""
    r = post(f"{dev}/Checkout/o1/run/send", {"item": "book", "price": 12})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 20
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = post(f"{dev}/Checkout/o1/payment_id").json()
        time.sleep(0.05) if pid is None else None
    assert pid and pid.startswith("sign_1")
    assert post(f"{dev}/restate/awakeables/{pid}/resolve", "paid").status_code in (200, 202)
    assert post(f"{dev}/Checkout/o1/approve", "ok").status_code == 200
    r = httpx.get(f"{dev}/restate/workflow/Checkout/o1/attach", timeout=30)
    assert r.json() == "book (res-book) paid, approval ok, shipped"


def test_saga(dev: str) -> None:
    """Saga compensates the booked legs when one fails."""
    assert post(f"{dev}/Trip/book", {"trip": "t"}).json()["bookings"] == [
        "flight-booking",
        "hotel-booking",
        "car-booking",
    ]
    r = post(f"{dev}/Trip/book", {"trip": "t", "fail_at": "car"})
    assert r.status_code == 409
    assert "car-cancelled, hotel-cancelled, flight-cancelled" in r.text


def test_fanout(dev: str) -> None:
    """Fan-out gathers concurrent calls."""
    assert post(f"{dev}/Fanout/run", [1, 2, 3]).json() == {"squares": [1, 4, 9], "total": 14}


def test_examples_exist() -> None:
    """The five examples are present."""
    assert all((EXAMPLES / f"{n}.py").is_file() for n in NAMES)
    assert Path(EXAMPLES).is_dir()
