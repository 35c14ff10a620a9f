"""The ``restate-lambda`` command line (Typer + Rich).

Errors are one line on stderr (``error: ...``) with an exit code: 1 the operation failed, 2 bad
usage or configuration, 3 not found (see :mod:`infra.cli_output`). Shell completion:
``restate-lambda --install-completion``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from infra.cli_admin import deployments_app, invocations_app, kv_app, services_app
from infra.cli_identity import identity_app
from infra.cli_output import EXIT_FAILED, EXIT_USAGE, fail, progress, say
from infra.cli_schedules import schedules_app, subscriptions_app

app = typer.Typer(
    no_args_is_help=True,
    help="restate-lambda: durable execution, serverless.",
    pretty_exceptions_enable=False,
)
storage_app = typer.Typer(no_args_is_help=True, help="Create and check storage.")
app.add_typer(deployments_app, name="deployments")
app.add_typer(services_app, name="services")
app.add_typer(invocations_app, name="invocations")
app.add_typer(kv_app, name="kv")
app.add_typer(storage_app, name="storage")
app.add_typer(identity_app, name="identity")
app.add_typer(schedules_app, name="schedules")
app.add_typer(subscriptions_app, name="subscriptions")


def version_text() -> str:
    """``restate-lambda X.Y.Z`` from the installed distribution (or the source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"restate-lambda {version('restate-lambda')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "restate-lambda (not installed)"


def _version(value: bool) -> None:
    if value:
        say(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """restate-lambda: durable execution, serverless."""


@app.command()
def dev(
    apps: Annotated[
        list[str] | None,
        typer.Argument(
            help="Python files whose ASGI app (restate or restate_lambda) to serve "
            "in process, e.g. examples/greeter.py (or FILE:ATTRIBUTE)"
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (0.0.0.0 in a container; then --admin-token is required)."
        ),
    ] = "127.0.0.1",
    ingress_port: Annotated[int, typer.Option(help="Ingress port.")] = 8080,
    admin_port: Annotated[int, typer.Option(help="Admin API port.")] = 9070,
    data_dir: Annotated[Path, typer.Option(help="Where the runtime keeps its data.")] = Path(
        ".restate-lambda"
    ),
    storage: Annotated[
        str | None,
        typer.Option(
            envvar="RESTATE_LAMBDA_STORAGE",
            help="Storage URL (default sqlite:///DATA_DIR/restate-lambda.db).",
        ),
    ] = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when a served module's directory changes.")
    ] = False,
    shutdown_timeout: Annotated[
        float,
        typer.Option(help="Seconds requests in flight get after Ctrl-C (a second one forces)."),
    ] = 5.0,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
    log_format: Annotated[
        str,
        typer.Option(
            envvar="RESTATE_LAMBDA_LOG_FORMAT",
            help="Log lines as 'text' or 'json' (one object per line, with invocation ids).",
        ),
    ] = "text",
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="RESTATE_LAMBDA_ADMIN_TOKEN",
            help="Bearer token the admin API requires (the restate CLI sends it from "
            "RESTATE_AUTH_TOKEN). Prefer the environment variable: arguments show in ps.",
        ),
    ] = None,
) -> None:
    """Run ingress, admin API, engine and timers in one process."""
    if reload:
        from infra.reloader import supervise

        argv = [a for a in sys.argv[1:] if a != "--reload"]
        raise typer.Exit(
            supervise([sys.executable, "-m", "infra.cli", *argv], apps or [], shutdown_timeout)
        )
    from backends.api import BackendError
    from infra.dev_server import (
        AppLoadError,
        DataDirLockedError,
        DevOptions,
        PortInUseError,
        serve,
    )
    from infra.logging_setup import configure_logging, parse_log_format

    try:
        level = logging.getLevelNamesMapping()[log_level.upper()]
    except KeyError:
        fail(f"unknown --log-level {log_level!r}: use DEBUG, INFO, WARNING or ERROR", EXIT_USAGE)
    try:
        configure_logging(level, parse_log_format(log_format))
    except ValueError:
        fail(f"unknown --log-format {log_format!r}: use text or json", EXIT_USAGE)
    options = DevOptions(
        ingress_port=ingress_port,
        admin_port=admin_port,
        data_dir=data_dir,
        storage=storage,
        host=host,
        apps=tuple(apps or ()),
        admin_token=admin_token,
        shutdown_timeout=shutdown_timeout,
    )
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
            asyncio.run(serve(options))
        else:
            uvloop.run(serve(options))
    except (AppLoadError, PortInUseError, DataDirLockedError, ValueError, OSError) as exc:
        fail(str(exc), EXIT_USAGE)
    except BackendError as exc:
        fail(f"storage unavailable: {exc}", EXIT_USAGE)


@storage_app.command("init")
def storage_init(
    url: Annotated[str, typer.Argument(help="Storage URL, e.g. dynamodb://TABLE?region=...")],
) -> None:
    """Create the tables and bucket a storage URL names (idempotent)."""
    from infra.provision import ensure_storage

    try:
        with progress(f"creating the storage of {url}") as status:
            for line in ensure_storage(url):
                if status is not None:
                    status.update(line)
                say(line)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # boto errors: unreachable endpoint, credentials
        fail(f"cannot initialise {url}: {type(exc).__name__}: {exc}", EXIT_FAILED)


@storage_app.command("gc")
def storage_gc(
    url: Annotated[str, typer.Argument(help="dynamodb://TABLE?bucket=...&region=... URL")],
    grace_hours: Annotated[
        float, typer.Option(help="Keep blobs younger than this (at least 1 hour).")
    ] = 6.0,
) -> None:
    """Delete offloaded values (S3 blobs) that no item refers to any more (dynamodb:// only)."""
    from backends.dynamodb import DynamoDbBackend, SweepReport

    async def sweep() -> SweepReport:
        backend = DynamoDbBackend.from_url(url)
        try:
            return await backend.sweep_blobs(grace_ms=int(grace_hours * 3_600_000))
        finally:
            await backend.close()

    try:
        with progress(f"sweeping the blobs of {url}"):
            report = asyncio.run(sweep())
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # unreachable endpoint, missing bucket, credentials
        fail(f"cannot sweep the blobs of {url}: {exc}", EXIT_FAILED)
    say(
        f"blobs: {report.listed} listed, {report.young} younger than {grace_hours:g} h, "
        f"{report.live} in use, {report.deleted} deleted, {report.failed} failed to delete, "
        f"{report.foreign} of other tables, {report.unowned} without owner (checked by scan)"
    )
    if report.failed:
        raise typer.Exit(EXIT_FAILED)


def main() -> None:  # pragma: no cover
    """Entry point for ``python -m infra.cli``."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
