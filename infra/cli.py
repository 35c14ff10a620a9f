"""The ``restate-lambda`` command line (Typer)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from infra.cli_identity import identity_app

app = typer.Typer(no_args_is_help=True, help="restate-lambda: durable execution, serverless.")
deployments_app = typer.Typer(no_args_is_help=True, help="Register and list deployments.")
invocations_app = typer.Typer(no_args_is_help=True, help="Inspect and manage invocations.")
kv_app = typer.Typer(no_args_is_help=True, help="Read the K/V state of objects and workflows.")
storage_app = typer.Typer(no_args_is_help=True, help="Create and check storage.")
app.add_typer(deployments_app, name="deployments")
app.add_typer(invocations_app, name="invocations")
app.add_typer(kv_app, name="kv")
app.add_typer(storage_app, name="storage")
app.add_typer(identity_app, name="identity")

AdminUrl = Annotated[
    str,
    typer.Option(envvar="RESTATE_ADMIN_URL", help="Admin API of a running runtime."),
]


@app.command()
def dev(
    apps: Annotated[
        list[str] | None,
        typer.Argument(
            help="Python files whose ASGI app (restate or restate_lambda) to serve "
            "in process, e.g. examples/greeter.py"
        ),
    ] = None,
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
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="RESTATE_LAMBDA_ADMIN_TOKEN",
            help="Bearer token the admin API requires (the restate CLI sends it from "
            "RESTATE_AUTH_TOKEN). Prefer the environment variable: arguments show in ps.",
        ),
    ] = None,
) -> None:
    """Run ingress, admin API, engine and timers in one process on 127.0.0.1."""
    from backends.api import BackendError
    from infra.dev_server import DataDirLockedError, DevOptions, serve

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = DevOptions(
        ingress_port=ingress_port,
        admin_port=admin_port,
        data_dir=data_dir,
        storage=storage,
        apps=tuple(apps or ()),
        admin_token=admin_token,
    )
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
            asyncio.run(serve(options))
        else:
            uvloop.run(serve(options))
    except DataDirLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (ValueError, FileNotFoundError, ImportError, AttributeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except BackendError as exc:
        typer.echo(f"error: storage unavailable: {exc}", err=True)
        raise typer.Exit(2) from exc


def _admin(method: str, url: str, body: Any = None) -> Any:
    import httpx

    token = os.environ.get("RESTATE_LAMBDA_ADMIN_TOKEN") or os.environ.get("RESTATE_AUTH_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    headers["accept"] = "application/json"  # /query answers Arrow otherwise, as Restate's does
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the admin API at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        typer.echo(f"error: HTTP {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


@deployments_app.command("register")
def deployments_register(
    uri: Annotated[str, typer.Argument(help="Deployment URL or Lambda ARN.")],
    admin_url: AdminUrl = "http://127.0.0.1:9070",
    force: Annotated[bool, typer.Option(help="Overwrite an existing deployment.")] = False,
) -> None:
    """Register a deployment by discovery."""
    key = "arn" if uri.startswith("arn:") else "uri"
    result = _admin(
        "POST", f"{admin_url}/deployments", {key: uri, "force": force, "use_http_11": True}
    )
    typer.echo(json.dumps(result, indent=2))


@deployments_app.command("list")
def deployments_list(admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """List deployments."""
    result = _admin("GET", f"{admin_url}/deployments")
    for dep in result.get("deployments", []):
        services = ", ".join(s["name"] for s in dep.get("services", []))
        typer.echo(f"{dep['id']}  {dep.get('uri') or dep.get('arn')}  [{services}]")


@invocations_app.command("list")
def invocations_list(
    admin_url: AdminUrl = "http://127.0.0.1:9070",
    all_: Annotated[bool, typer.Option("--all", help="Include completed ones.")] = False,
) -> None:
    """List invocations, newest first."""
    result = _admin("GET", f"{admin_url}/invocations?all={str(all_).lower()}")
    for row in result.get("invocations", []):
        typer.echo(f"{row['id']}  {row['target']}  {row['status']}")


@invocations_app.command("describe")
def invocations_describe(invocation_id: str, admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """Show one invocation and its journal."""
    typer.echo(json.dumps(_admin("GET", f"{admin_url}/invocations/{invocation_id}"), indent=2))


def _manage(action: str, invocation_id: str, admin_url: str) -> None:
    _admin("PATCH", f"{admin_url}/invocations/{invocation_id}/{action}")
    typer.echo(f"{action}: {invocation_id}")


@invocations_app.command("cancel")
def invocations_cancel(invocation_id: str, admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """Cancel an invocation (cooperatively, reaching its child calls)."""
    _manage("cancel", invocation_id, admin_url)


@invocations_app.command("kill")
def invocations_kill(invocation_id: str, admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """Kill an invocation immediately."""
    _manage("kill", invocation_id, admin_url)


@invocations_app.command("purge")
def invocations_purge(invocation_id: str, admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """Delete a completed invocation's records."""
    _manage("purge", invocation_id, admin_url)


@kv_app.command("get")
def kv_get(service: str, key: str, admin_url: AdminUrl = "http://127.0.0.1:9070") -> None:
    """Print the state of one object or workflow instance."""
    query = (
        f"select key, value from state where service_name = '{service}' and service_key = '{key}' ;"
    )
    result = _admin("POST", f"{admin_url}/query", {"query": query})
    for row in result.get("rows", []):
        raw = bytes.fromhex(row["value"])
        typer.echo(f"{row['key']} = {raw.decode('utf-8', 'replace')}")


@storage_app.command("init")
def storage_init(
    url: Annotated[str, typer.Argument(help="Storage URL, e.g. dynamodb://TABLE?region=...")],
) -> None:
    """Create the tables and bucket a storage URL names (idempotent)."""
    from infra.provision import ensure_storage

    try:
        for line in ensure_storage(url):
            typer.echo(line)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # boto errors: unreachable endpoint, credentials
        typer.echo(f"error: cannot initialise {url}: {exc}", err=True)
        raise typer.Exit(1) from exc


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
        report = asyncio.run(sweep())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # unreachable endpoint, missing bucket, credentials
        typer.echo(f"error: cannot sweep the blobs of {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"blobs: {report.listed} listed, {report.young} younger than {grace_hours:g} h, "
        f"{report.live} in use, {report.deleted} deleted, {report.failed} failed to delete, "
        f"{report.foreign} of other tables, {report.unowned} without owner (checked by scan)"
    )
    if report.failed:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    """Entry point for ``python -m infra.cli``."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
