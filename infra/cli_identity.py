"""``restate-lambda identity``: the key the runtime signs its requests to deployments with.

Registered in :mod:`infra.cli` as ``app.add_typer(identity_app, name="identity")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

identity_app = typer.Typer(
    no_args_is_help=True,
    help="The request-identity key: give its public key to the SDKs' identity_keys.",
)

KeySource = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="RESTATE_LAMBDA_REQUEST_IDENTITY_KEY",
        help="Key source: ssm:/PARAMETER, file:PATH or PATH "
        "(default: DATA_DIR/identity.pem, the dev server's key).",
    ),
]
DataDir = Annotated[Path, typer.Option(help="The dev server's data directory.")]
Region = Annotated[
    str | None, typer.Option(envvar="AWS_REGION", help="Region of an ssm: parameter.")
]


def _source(key: str | None, data_dir: Path) -> str:
    from infra.identity_keys import dev_key_path

    return key.strip() if key and key.strip() else str(dev_key_path(data_dir))


def _public_key(source: str, region: str | None) -> str:
    from infra.identity_keys import KeySourceError, load_signer
    from invoker.request_identity import KeyFormatError

    try:
        return load_signer(source, region=region).public_key
    except KeySourceError as exc:
        typer.echo(
            f"error: {exc}: create it with `restate-lambda identity init` "
            "(restate-lambda dev creates DATA_DIR/identity.pem)",
            err=True,
        )
        raise typer.Exit(1) from exc
    except KeyFormatError as exc:
        typer.echo(f"error: {source}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # boto errors: credentials, permissions, unreachable endpoint
        typer.echo(f"error: cannot read {source}: {exc}", err=True)
        raise typer.Exit(1) from exc


@identity_app.command("show")
def show(
    key: KeySource = None,
    data_dir: DataDir = Path(".restate-lambda"),
    region: Region = None,
) -> None:
    """Print the public key (publickeyv1_...) for the SDKs' identity_keys."""
    typer.echo(_public_key(_source(key, data_dir), region))


@identity_app.command("init")
def init(
    key: KeySource = None,
    data_dir: DataDir = Path(".restate-lambda"),
    region: Region = None,
) -> None:
    """Create the key unless it exists (never replaces one); print its public key."""
    from infra.identity_keys import ensure_key

    source = _source(key, data_dir)
    try:
        created = ensure_key(source, region=region)
    except Exception as exc:  # OSError; boto errors: credentials, permissions, endpoint
        typer.echo(f"error: cannot create {source}: {exc}", err=True)
        raise typer.Exit(1) from exc
    public = _public_key(source, region)
    where = source if not source.startswith("-----BEGIN") else "the PEM given"
    typer.echo(f"{'created' if created else 'exists'}: {where}", err=True)
    typer.echo(public)
