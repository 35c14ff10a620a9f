"""Where the runtime's request-identity key lives, and how it is created and loaded.

The runtime signs its requests to deployments (:mod:`invoker.request_identity`) with one Ed25519
private key, a PKCS#8 PEM. A *key source* names it:

=================================  ===========================================================
``ssm:/NAME``                      an SSM Parameter Store ``SecureString`` (on AWS; boto3 is
                                   imported only to read or create it)
``file:PATH`` or ``PATH``          a PEM file (created with mode 0600)
``-----BEGIN PRIVATE KEY-----…``   the PEM itself (e.g. an environment variable)
=================================  ===========================================================

``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY`` holds the source the runtime uses. Unset, ``restate-lambda
dev`` uses ``DATA_DIR/identity.pem`` and creates it on first start; the Lambda functions then
send no identity. ``restate-lambda identity init`` creates a key at any source,
``restate-lambda identity show`` prints its public key (``publickeyv1_…``), the value to give the
SDKs' ``identity_keys``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from restate_lambda.clock import Clock

if TYPE_CHECKING:  # cryptography (the "identity" extra) is imported only when a key is used
    from invoker.request_identity import RequestSigner

log = logging.getLogger("restate_lambda.identity")

#: The environment variable naming the runtime's key source.
ENV_VAR: Final = "RESTATE_LAMBDA_REQUEST_IDENTITY_KEY"
#: An SSM endpoint for local testing (unset on AWS).
SSM_ENDPOINT_ENV_VAR: Final = "RESTATE_LAMBDA_SSM_ENDPOINT_URL"
#: The dev server's key, relative to its data directory.
DEV_KEY_FILE: Final = "identity.pem"
_PEM_START: Final = "-----BEGIN"


class KeySourceError(ValueError):
    """The key source is malformed, or names no key."""


def dev_key_path(data_dir: Path) -> Path:
    """The dev server's key file in ``data_dir``."""
    return data_dir / DEV_KEY_FILE


def _file_path(source: str) -> Path:
    return Path(source.removeprefix("file:")).expanduser()


def _ssm_name(source: str) -> str:
    name = source.removeprefix("ssm:")
    if not name:
        raise KeySourceError("ssm: needs a parameter name, e.g. ssm:/restate-lambda/identity")
    return name


def ensure_key_file(path: Path) -> bool:
    """Create a new key at ``path`` unless a file is there; True if this call created it.

    The file is written completely (mode 0600) before it appears under its name, so a reader
    never sees half a key, and two concurrent calls leave exactly one key.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    from invoker.request_identity import generate_pem

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(generate_pem())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: never replaces a key
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _ssm_client(region: str | None, endpoint_url: str | None) -> Any:
    import boto3

    endpoint = endpoint_url or os.environ.get(SSM_ENDPOINT_ENV_VAR) or None
    return boto3.client("ssm", region_name=region, endpoint_url=endpoint)


def ensure_ssm_key(
    name: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
) -> bool:
    """Create the ``SecureString`` parameter ``name`` with a new key unless it exists; True if
    this call created it (an existing parameter is never overwritten)."""
    from invoker.request_identity import generate_pem

    ssm = client or _ssm_client(region, endpoint_url)
    try:
        ssm.put_parameter(
            Name=name,
            Value=generate_pem().decode(),
            Type="SecureString",
            Overwrite=False,
            Description="restate-lambda request identity: Ed25519 private key (PKCS#8 PEM)",
        )
    except ssm.exceptions.ParameterAlreadyExists:
        return False
    return True


def ensure_key(source: str, *, region: str | None = None, endpoint_url: str | None = None) -> bool:
    """Create a key at ``source`` unless one is there; True if this call created it."""
    if source.startswith(_PEM_START):
        return False
    if source.startswith("ssm:"):
        name = _ssm_name(source)
        return ensure_ssm_key(name, region=region, endpoint_url=endpoint_url)
    return ensure_key_file(_file_path(source))


def read_key(source: str, *, region: str | None = None, endpoint_url: str | None = None) -> bytes:
    """The PEM a key source names.

    Raises:
        KeySourceError: no key there (a missing file or parameter).
    """
    if source.startswith(_PEM_START):
        return source.encode()
    if source.startswith("ssm:"):
        name = _ssm_name(source)
        ssm = _ssm_client(region, endpoint_url)
        try:
            found = ssm.get_parameter(Name=name, WithDecryption=True)
        except ssm.exceptions.ParameterNotFound:
            raise KeySourceError(f"no SSM parameter {name!r}") from None
        return str(found["Parameter"]["Value"]).encode()
    path = _file_path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeySourceError(f"no key file {path}") from None


def load_signer(
    source: str,
    clock: Clock | None = None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> RequestSigner:
    """A signer for the key at ``source`` (KeySourceError or KeyFormatError if unusable)."""
    from invoker.request_identity import RequestSigner

    return RequestSigner.from_pem(read_key(source, region=region, endpoint_url=endpoint_url), clock)


def signer_from_env(
    env: Mapping[str, str] | None = None, clock: Clock | None = None, *, region: str | None = None
) -> RequestSigner | None:
    """The signer ``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY`` names, or None when it is unset."""
    env = os.environ if env is None else env
    source = env.get(ENV_VAR, "").strip()
    if not source:
        return None
    return load_signer(source, clock, region=region)


def dev_signer(
    data_dir: Path, clock: Clock | None = None, env: Mapping[str, str] | None = None
) -> RequestSigner | None:
    """The dev server's signer: ``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY`` if set, else
    ``DATA_DIR/identity.pem``, created on first use.

    None (requests go unsigned, with a warning) when ``cryptography`` is not installed and the
    environment names no key; a key the environment names must load.
    """
    from_env = signer_from_env(env, clock)
    if from_env is not None:
        return from_env
    try:
        import cryptography  # noqa: F401
    except ImportError:
        log.warning(
            "requests to deployments are not signed: install restate-lambda[identity] "
            "(cryptography) for request identity"
        )
        return None
    path = dev_key_path(data_dir)
    ensure_key_file(path)
    return load_signer(str(path), clock)


def default_source(data_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """The key source in effect: the environment's, else the dev data directory's file."""
    env = os.environ if env is None else env
    return env.get(ENV_VAR, "").strip() or str(dev_key_path(data_dir))
