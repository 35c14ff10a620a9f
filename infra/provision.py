"""Create the storage a URL names: the DynamoDB table (with its due index) and the S3 bucket.

Used by ``restate-lambda storage init URL`` and by the tests. Everything here is idempotent:
existing resources are checked, not recreated.

The table's definition lives in one place, :func:`backends.dynamodb.table_spec` (``CreateTable``
arguments); :func:`table_definition` renders the same thing as a CloudFormation resource so the
SAM template can be compared with it (``tests`` may assert
``template["Resources"]["Table"]["Properties"] == table_definition()["Properties"]`` modulo extras
like streams, TTL or PITR, which the engine does not depend on).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, Final

from backends.dynamodb import (
    TTL_ATTRIBUTE,
    DynamoDbSettings,
    make_clients,
    parse_url,
    table_mismatches,
    table_spec,
)

#: The environment variable naming the runtime's request-identity key source (the same as
#: :data:`infra.identity_keys.ENV_VAR`, repeated to keep this module's imports light).
IDENTITY_ENV_VAR: Final = "RESTATE_LAMBDA_REQUEST_IDENTITY_KEY"


class ProvisionError(RuntimeError):
    """A resource exists but cannot be used as is, or could not be created."""


def table_definition(table_name: str | None = None) -> dict[str, Any]:
    """The table as a CloudFormation ``AWS::DynamoDB::Table`` resource.

    Args:
        table_name: ``TableName`` to set; ``None`` leaves it out (CloudFormation names the table,
            and the stack passes the name to the functions in the storage URL).
    """
    spec = table_spec(table_name or "")
    properties: dict[str, Any] = {
        "BillingMode": spec["BillingMode"],
        "AttributeDefinitions": spec["AttributeDefinitions"],
        "KeySchema": spec["KeySchema"],
        "GlobalSecondaryIndexes": spec["GlobalSecondaryIndexes"],
        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
    }
    if table_name:
        properties = {"TableName": table_name, **properties}
    return {"Type": "AWS::DynamoDB::Table", "Properties": properties}


def create_table(client: Any, table: str, *, timeout_s: float = 120.0) -> bool:
    """Create ``table`` unless it exists; wait until it is ``ACTIVE``; check its layout.

    Returns:
        ``True`` if this call created the table.

    Raises:
        ProvisionError: the table exists with another layout, or did not become active in time.
    """
    created = False
    try:
        client.create_table(**table_spec(table))
        created = True
    except client.exceptions.ResourceInUseException:
        pass  # exists (or being created by a concurrent init)
    deadline = time.monotonic() + timeout_s
    while True:
        desc = client.describe_table(TableName=table)["Table"]
        indexes = desc.get("GlobalSecondaryIndexes", [])
        if desc.get("TableStatus") == "ACTIVE" and all(
            g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in indexes
        ):
            break
        if time.monotonic() > deadline:
            raise ProvisionError(f"table {table!r} not ACTIVE after {timeout_s:.0f} s")
        time.sleep(0.5)
    enable_expiry(client, table)
    problems = table_mismatches(table, desc)
    if problems:
        raise ProvisionError(
            f"table {table!r} exists but does not have the expected layout: {'; '.join(problems)}"
        )
    return created


def enable_expiry(client: Any, table: str) -> None:
    """Turn on DynamoDB TTL on the backend's ``ttl`` attribute (idempotent)."""
    status = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def create_bucket(client: Any, bucket: str, region: str | None) -> bool:
    """Create ``bucket`` unless this account already owns it.

    Returns:
        ``True`` if this call created the bucket.

    Raises:
        ProvisionError: the name is taken by another account.
    """
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False  # exists and we may use it (in us-east-1 CreateBucket would just say 200)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("403", "Forbidden"):
            raise ProvisionError(
                f"S3 bucket {bucket!r} exists but this account may not use it"
            ) from e
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
        return True
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "BucketAlreadyOwnedByYou":
            return False
        if code == "BucketAlreadyExists":
            raise ProvisionError(f"S3 bucket name {bucket!r} is taken by another account") from e
        raise


def provision_dynamodb(settings: DynamoDbSettings) -> list[str]:
    """Create the table and (if named) the bucket of ``settings``; return what was done."""
    ddb, s3 = make_clients(settings)
    try:
        done = [
            f"table {settings.table}: "
            + ("created" if create_table(ddb, settings.table) else "exists, layout ok")
        ]
        if settings.bucket is not None:
            made = create_bucket(s3, settings.bucket, ddb.meta.region_name)
            done.append(f"bucket {settings.bucket}: " + ("created" if made else "exists"))
        return done
    finally:
        ddb.close()
        if s3 is not None:
            s3.close()


def ensure_storage(
    url: str, identity_key: str | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Create whatever the storage URL needs; idempotent. Returns a line per resource.

    ``dynamodb://`` creates the table and bucket; ``sqlite://`` creates the database file and
    schema; ``memory://`` needs nothing. The runtime's request-identity key is created too when
    a key source is named (``identity_key``, else ``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY`` in
    ``env``, default ``os.environ``); an existing key is kept.

    Raises:
        ValueError: a malformed URL.
        ProvisionError: a resource exists but is unusable.
    """
    scheme, sep, rest = url.partition("://")
    region = None
    if scheme.lower() == "dynamodb" and sep:
        settings = parse_url(rest)
        region = settings.region
        done = provision_dynamodb(settings)
    else:
        from backends.registry import open_backend

        backend = open_backend(url)  # validates the URL; SQLite creates its schema on open
        asyncio.run(backend.close())
        done = [f"{scheme}: ready"]
    env = os.environ if env is None else env
    source = (identity_key or env.get(IDENTITY_ENV_VAR, "")).strip()
    if source:
        done.append(ensure_identity_key(source, region=region))
    return done


def ensure_identity_key(source: str, *, region: str | None = None) -> str:
    """Create the request-identity key at ``source`` unless it exists; a line saying which, with
    the public key to give the SDKs' ``identity_keys``."""
    from infra.identity_keys import ensure_key, load_signer

    created = ensure_key(source, region=region)
    public = load_signer(source, region=region).public_key
    where = "the PEM given" if source.startswith("-----BEGIN") else source
    return f"request identity key {where}: {'created' if created else 'exists'}, {public}"


#: The name the CLI and earlier notes use.
create_tables = ensure_storage
