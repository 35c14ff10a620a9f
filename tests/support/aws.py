"""AWS test servers: DynamoDB Local (Java) and a serialised moto server for S3.

Both start lazily, once per test session, on free 127.0.0.1 ports, and stop at exit:

* DynamoDB: ``DYNAMODB_ENDPOINT`` if set, else DynamoDB Local from ``scripts/dynamodb_local.sh``
  (npm package installed into ``<repo>/.tools/ddb``; in memory, ``-sharedDb``).
* S3: ``S3_ENDPOINT`` if set, else a moto server in a child process (``python -m
  tests.support.aws moto PORT``) whose requests are serialised by one lock: moto's server is not
  atomic under concurrent requests (see ``/work/shared/reference/ecosystem.md``). A child process
  keeps its state apart from in-process ``mock_aws`` tests.

Tests skip (with the reason) only when ``java`` or ``npm`` is missing. Dummy credentials and
region are set in ``os.environ`` for the session (:func:`aws_test_env`).

:func:`dynamodb_backend` yields an empty :class:`~backends.dynamodb.DynamoDbBackend` on a fresh
table (deleted afterwards), optionally with the shared test bucket for offloading.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / ".tools" / "logs"
REGION = "us-east-1"
TEST_BUCKET = "restate-lambda-test-blobs"


def aws_test_env() -> None:
    """Dummy credentials and region for every boto3 client of this process."""
    os.environ["AWS_ACCESS_KEY_ID"] = "test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Servers:
    """The session's servers, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dynamodb: str | None = os.environ.get("DYNAMODB_ENDPOINT") or None
        self._s3: str | None = os.environ.get("S3_ENDPOINT") or None
        self._procs: list[Any] = []
        self._clients: dict[str, Any] = {}
        atexit.register(self.stop)

    def dynamodb(self) -> str:
        """The DynamoDB endpoint URL (skips the test if java/npm are missing)."""
        with self._lock:
            if self._dynamodb is None:
                self._dynamodb = self._start_dynamodb_local()
            return self._dynamodb

    def s3(self) -> str:
        """The S3 endpoint URL, with :data:`TEST_BUCKET` created."""
        with self._lock:
            if self._s3 is None:
                self._s3 = self._start_moto()
                self._make_bucket(self._s3)
            elif "s3-bucket" not in self._clients:
                self._make_bucket(self._s3)
            return self._s3

    def client(self, service: str) -> Any:
        """A shared boto3 client for the session's endpoint of ``service``."""
        endpoint = self.dynamodb() if service == "dynamodb" else self.s3()
        with self._lock:
            if service not in self._clients:
                from backends.dynamodb import DynamoDbSettings, make_clients

                ddb, s3 = make_clients(
                    DynamoDbSettings(
                        "unused",
                        REGION,
                        endpoint,
                        TEST_BUCKET if service == "s3" else None,
                        endpoint if service == "s3" else None,
                    ),
                    max_pool_connections=64,
                )
                self._clients[service] = ddb if service == "dynamodb" else s3
            return self._clients[service]

    def _start_dynamodb_local(self) -> str:
        from tests.support.processes import ManagedProcess, free_port, wait_until

        missing = [tool for tool in ("java", "npm", "node") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"DynamoDB Local needs {' and '.join(missing)} on PATH (not found)")
        aws_test_env()
        script = REPO / "scripts" / "dynamodb_local.sh"
        done = subprocess.run([str(script), "install"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{script} install failed:\n{done.stderr}")
        port = free_port()
        proc = ManagedProcess(
            "dynamodb-local", [str(script), "run", str(port)], LOG_DIR / f"ddb-{port}.log"
        )
        proc.start()
        self._procs.append(proc)
        endpoint = f"http://127.0.0.1:{port}"
        wait_until(lambda: _tcp_open(port), 60, "DynamoDB Local to listen", process=proc)
        return endpoint

    def _start_moto(self) -> str:
        from tests.support.processes import ManagedProcess, free_port, wait_until

        aws_test_env()
        port = free_port()
        proc = ManagedProcess(
            "moto-s3",
            [sys.executable, "-m", "tests.support.aws", "moto", str(port)],
            LOG_DIR / f"moto-{port}.log",
            cwd=REPO,
        )
        proc.start()
        self._procs.append(proc)
        wait_until(lambda: _tcp_open(port), 30, "moto server to listen", process=proc)
        return f"http://127.0.0.1:{port}"

    def _make_bucket(self, endpoint: str) -> None:
        from backends.dynamodb import DynamoDbSettings, make_clients
        from infra.provision import create_bucket

        aws_test_env()
        _, s3 = make_clients(DynamoDbSettings("unused", REGION, None, TEST_BUCKET, endpoint))
        create_bucket(s3, TEST_BUCKET, REGION)
        self._clients["s3-bucket"] = s3

    def stop(self) -> None:
        """Stop the servers this process started (never others)."""
        for proc in self._procs:
            proc.stop(grace=5)
        self._procs.clear()


SERVERS = _Servers()


@asynccontextmanager
async def dynamodb_backend(
    *, bucket: bool = False, offload_threshold: int | None = None, blob_prefix: str | None = None
) -> AsyncIterator[Any]:
    """An empty :class:`~backends.dynamodb.DynamoDbBackend` on a fresh table, dropped afterwards.

    Args:
        bucket: offload large values to the session's S3 (moto) bucket.
        offload_threshold: values longer than this go to S3 (needs ``bucket``).
        blob_prefix: key prefix of the blobs (default ``blobs/``; the bucket is shared by the
            session, so tests that list blobs pass one of their own).
    """
    from backends.dynamodb import DynamoDbBackend
    from infra.provision import create_table

    aws_test_env()
    ddb = SERVERS.client("dynamodb")
    s3 = SERVERS.client("s3") if bucket else None
    table = f"t-{uuid.uuid4().hex[:16]}"
    create_table(ddb, table)
    kwargs: dict[str, Any] = {}
    if offload_threshold is not None:
        kwargs["offload_threshold"] = offload_threshold
    if blob_prefix is not None:
        kwargs["blob_prefix"] = blob_prefix
    backend = DynamoDbBackend(
        table,
        client=ddb,
        s3_client=s3,
        bucket=TEST_BUCKET if bucket else None,
        owns_clients=False,
        **kwargs,
    )
    try:
        yield backend
    finally:
        await backend.close()
        ddb.delete_table(TableName=table)


@asynccontextmanager
async def _dynamodb(tmp_path: Path) -> AsyncIterator[Any]:
    async with dynamodb_backend() as backend:
        yield backend


@asynccontextmanager
async def _dynamodb_s3(tmp_path: Path) -> AsyncIterator[Any]:
    async with dynamodb_backend(bucket=True, offload_threshold=4) as backend:
        yield backend


#: Entries for ``tests/backends/conftest.py``'s ``BACKENDS``: DynamoDB Local, and DynamoDB Local
#: with every value longer than 4 bytes offloaded to S3 (moto). ``RESTATE_LAMBDA_TEST_DYNAMODB=0``
#: leaves them out (a quick local run without Java).
DYNAMODB_BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Any]]] = (
    {}
    if os.environ.get("RESTATE_LAMBDA_TEST_DYNAMODB") == "0"
    else {"dynamodb": _dynamodb, "dynamodb-s3": _dynamodb_s3}
)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """The session's DynamoDB endpoint (``DYNAMODB_ENDPOINT`` or DynamoDB Local)."""
    aws_test_env()
    yield SERVERS.dynamodb()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The session's S3 endpoint (``S3_ENDPOINT`` or a locked moto server), bucket created."""
    aws_test_env()
    yield SERVERS.s3()


# -- a moto server whose requests are serialised -----------------------------------------------


def serve_locked_moto(port: int, host: str = "127.0.0.1") -> None:
    """Run moto's server with one global lock around every request (blocks forever)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    lock = threading.Lock()
    inner = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "") == "AmazonSQS.ReceiveMessage":
            return list(inner(environ, start_response))  # long polls must not hold the lock
        with lock:
            return list(inner(environ, start_response))

    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"locked moto server on http://{host}:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.support.aws moto PORT``: a locked moto server."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.aws")
    sub = parser.add_subparsers(dest="command", required=True)
    moto = sub.add_parser("moto", help="run a moto server with serialised requests")
    moto.add_argument("port", type=int)
    moto.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.command == "moto":
        serve_locked_moto(args.port, args.host)


if __name__ == "__main__":
    main()
