"""Configuration of the DynamoDB backend: the ``dynamodb://`` URL and the boto3 clients it names.

``dynamodb://TABLE[?region=..&endpoint_url=..&bucket=..&s3_endpoint_url=..]`` parses into
:class:`DynamoDbSettings` (:func:`parse_url`); :func:`make_clients` turns settings into a boto3
DynamoDB client and, with a bucket, an S3 client. boto3 is imported only there, so parsing a URL
(and importing this module) stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class DynamoDbSettings:
    """What a ``dynamodb://`` URL names.

    Attributes:
        table: the table name.
        region: AWS region (``None``: boto3's default chain, e.g. ``AWS_REGION``).
        endpoint_url: DynamoDB endpoint (DynamoDB Local, moto), ``None`` for AWS.
        bucket: S3 bucket for large values, ``None`` to reject them.
        s3_endpoint_url: S3 endpoint, ``None`` for AWS.
    """

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    bucket: str | None = None
    s3_endpoint_url: str | None = None


_URL_OPTIONS = ("region", "endpoint_url", "bucket", "s3_endpoint_url")


def parse_url(rest: str) -> DynamoDbSettings:
    """Parse what follows ``dynamodb://``: ``TABLE[?region=..&endpoint_url=..&bucket=..&...]``.

    Raises:
        ValueError: no or invalid table name, unknown or repeated option, bad endpoint or bucket.
    """
    example = "dynamodb://TABLE?region=us-east-1&bucket=BUCKET"
    parts = urlsplit("dynamodb://" + rest)
    if parts.fragment:
        raise ValueError(f"dynamodb:// takes no fragment, got {rest!r}")
    table = parts.netloc
    if parts.path not in ("", "/"):
        raise ValueError(f"dynamodb:// takes a table name, not a path: {rest!r} ({example})")
    if not table:
        raise ValueError(f"dynamodb:// needs a table name: {example}")
    if not _TABLE_NAME.match(table):
        raise ValueError(
            f"invalid DynamoDB table name {table!r}: 3-255 characters of A-Z a-z 0-9 _ - ."
        )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _URL_OPTIONS:
            raise ValueError(
                f"unknown dynamodb:// option {name!r}; known: {', '.join(_URL_OPTIONS)}"
            )
        if name in options:
            raise ValueError(f"dynamodb:// option {name!r} given twice")
        if not value:
            raise ValueError(f"dynamodb:// option {name!r} is empty")
        options[name] = value
    for name in ("endpoint_url", "s3_endpoint_url"):
        endpoint = options.get(name)
        if endpoint is not None:
            ep = urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ValueError(
                    f"dynamodb:// option {name} must be an http(s) URL, got {endpoint!r}"
                )
    bucket = options.get("bucket")
    if bucket is not None and not _BUCKET_NAME.match(bucket):
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    if "s3_endpoint_url" in options and bucket is None:
        raise ValueError("dynamodb:// option s3_endpoint_url needs bucket=...")
    return DynamoDbSettings(
        table=table,
        region=options.get("region"),
        endpoint_url=options.get("endpoint_url"),
        bucket=bucket,
        s3_endpoint_url=options.get("s3_endpoint_url"),
    )


def make_clients(
    settings: DynamoDbSettings,
    *,
    max_pool_connections: int = 40,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
    max_attempts: int = 4,
) -> tuple[Any, Any | None]:
    """A boto3 DynamoDB client and (with a bucket) an S3 client for ``settings``.

    Raises:
        ValueError: no region given and none configured in the environment.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    session = boto3.session.Session(region_name=settings.region)
    if session.region_name is None:
        raise ValueError("dynamodb:// needs a region: add ?region=... to the URL or set AWS_REGION")
    common: dict[str, Any] = {
        "max_pool_connections": max_pool_connections,
        "tcp_keepalive": True,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"mode": "standard", "total_max_attempts": max_attempts},
    }
    try:
        ddb = session.client(
            "dynamodb", endpoint_url=settings.endpoint_url, config=Config(**common)
        )
        s3 = None
        if settings.bucket is not None:
            s3_config = Config(
                **common,
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            )
            s3 = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=s3_config)
    except NoRegionError as e:  # pragma: no cover - guarded above
        raise ValueError(f"dynamodb:// needs a region: {e}") from e
    return ddb, s3
