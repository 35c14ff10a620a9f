"""DynamoDB backend specifics (the conformance suite covers the contract itself).

Most tests run against moto's in-process ``mock_aws`` (fast, single-threaded use only); the
``ddb_local`` ones against DynamoDB Local via :func:`tests.support.aws.dynamodb_backend`; the
error-mapping ones against a fake client.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backends.api import (
    BackendError,
    BackendUnavailableError,
    Check,
    ConflictError,
    Delete,
    Item,
    Put,
    ValueTooLargeError,
)
from backends.dynamodb import (
    DUE_SHARDS,
    INLINE_MAX_BYTES,
    DynamoDbBackend,
    decode_key,
    due_shard,
    encode_key,
    parse_url,
    table_spec,
)
from backends.registry import open_backend
from infra.provision import ensure_storage, table_definition
from tests.support.aws import aws_test_env, dynamodb_backend
from tests.support.processes import free_port

URL = "dynamodb://unit-table?region=us-east-1&bucket=unit-blobs"
MB = 1024 * 1024


@pytest.fixture
def mocked() -> Iterator[None]:
    """moto's in-process AWS with the table and bucket of :data:`URL` provisioned."""
    from moto import mock_aws

    aws_test_env()
    with mock_aws():
        assert ["table unit-table: created", "bucket unit-blobs: created"] == ensure_storage(URL)
        yield


@pytest.fixture
async def ddb(mocked: None) -> AsyncIterator[DynamoDbBackend]:
    """A backend on the mocked table, with the bucket."""
    backend = open_backend(URL)
    assert isinstance(backend, DynamoDbBackend)
    yield backend
    await backend.close()


def _raw(backend: DynamoDbBackend, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = backend.client.get_item(
        TableName=backend.table, Key={"pk": {"S": encode_key(pk)}, "sk": {"S": encode_key(sk)}}
    )["Item"]
    return item


# -- URLs --------------------------------------------------------------------------------------


def test_url_options() -> None:
    """Every option of a dynamodb:// URL lands in the settings."""
    s = parse_url(
        "tbl.name-1?region=eu-west-1&endpoint_url=http://127.0.0.1:8000"
        "&bucket=my-bucket&s3_endpoint_url=http://127.0.0.1:5000"
    )
    assert ("tbl.name-1", "eu-west-1") == (s.table, s.region)
    assert ("http://127.0.0.1:8000", "my-bucket") == (s.endpoint_url, s.bucket)
    assert "http://127.0.0.1:5000" == s.s3_endpoint_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb://", "needs a table name"),
        ("dynamodb://?region=us-east-1", "needs a table name"),
        ("dynamodb://ab", "invalid DynamoDB table name"),
        ("dynamodb://bad$name", "invalid DynamoDB table name"),
        ("dynamodb://tbl/sub", "not a path"),
        ("dynamodb://tbl?regoin=x", "unknown dynamodb:// option 'regoin'"),
        ("dynamodb://tbl?region=a&region=b", "given twice"),
        ("dynamodb://tbl?region=", "is empty"),
        ("dynamodb://tbl?endpoint_url=localhost:8000", "must be an http"),
        ("dynamodb://tbl?bucket=Bad_Bucket", "invalid S3 bucket name"),
        ("dynamodb://tbl?s3_endpoint_url=http://x:1", "needs bucket"),
        ("dynamodb://tbl#frag", "no fragment"),
        ("dynamodb://tbl?garbage", "unknown dynamodb:// option .garbage."),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    """A malformed dynamodb:// URL raises ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        open_backend(url)


def test_no_region_is_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ?region= and without AWS_REGION / AWS_DEFAULT_REGION, opening fails clearly."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ValueError, match="needs a region"):
        open_backend("dynamodb://tbl")


def test_registry_does_not_import_boto3() -> None:
    """Importing the registry (and the dynamodb module) does not import boto3."""
    code = (
        "import sys, backends.registry, backends.dynamodb, backends.s3_blobs; "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- layout ------------------------------------------------------------------------------------


def test_key_encoding_preserves_order_and_prefixes() -> None:
    """Empty and NUL-led keys are escaped; the mapping keeps order and prefix relations."""
    keys = ["", "\x00", "\x00\x00", "\x00a", "\x01", "a", "a\x00", "é"]
    stored = [encode_key(k) for k in keys]
    assert stored == sorted(stored)
    assert all(s for s in stored)
    assert keys == [decode_key(s) for s in stored]
    assert "inv/abc" == encode_key("inv/abc")


def test_due_shard_is_stable() -> None:
    """Shards are a stable hash (not Python's randomised hash) within the fixed range."""
    assert due_shard("inv/x", "meta") == due_shard("inv/x", "meta")
    shards = {due_shard(f"inv/{i}", "meta") for i in range(200)}
    assert {f"due#{n}" for n in range(DUE_SHARDS)} == shards


def test_cloudformation_definition_matches_spec() -> None:
    """The CloudFormation rendering carries the same keys, attributes and index as CreateTable."""
    spec = table_spec("x-table")
    resource = table_definition("x-table")
    assert "AWS::DynamoDB::Table" == resource["Type"]
    props = resource["Properties"]
    for field in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"):
        assert spec[field] == props[field]
    assert "x-table" == props["TableName"]
    assert "TableName" not in table_definition()["Properties"]


# -- provisioning and check (moto) -------------------------------------------------------------


async def test_provisioning_is_idempotent(ddb: DynamoDbBackend) -> None:
    """A second ensure_storage finds both resources and checks the table's layout."""
    assert ["table unit-table: exists, layout ok", "bucket unit-blobs: exists"] == ensure_storage(
        URL
    )
    await ddb.check()


async def test_check_missing_table(mocked: None) -> None:
    """check() on a table that does not exist says so and how to create it."""
    backend = open_backend("dynamodb://no-such-table?region=us-east-1")
    assert isinstance(backend, DynamoDbBackend)
    with pytest.raises(BackendError, match=r"does not exist.*storage init"):
        await backend.check()
    await backend.close()


async def test_check_wrong_layout(mocked: None) -> None:
    """check() on a table without the due index lists what is wrong."""
    backend = open_backend("dynamodb://plain-table?region=us-east-1")
    assert isinstance(backend, DynamoDbBackend)
    spec = table_spec("plain-table")
    del spec["GlobalSecondaryIndexes"]
    spec["AttributeDefinitions"] = spec["AttributeDefinitions"][:2]
    backend.client.create_table(**spec)
    with pytest.raises(BackendError, match="index 'due' is missing"):
        await backend.check()
    await backend.close()


async def test_ping_unreachable_endpoint() -> None:
    """check() against a closed port fails fast with BackendUnavailableError naming the table."""
    aws_test_env()
    url = f"dynamodb://tbl?region=us-east-1&endpoint_url=http://127.0.0.1:{free_port()}"
    backend = open_backend(url)
    assert isinstance(backend, DynamoDbBackend)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"DynamoDB table 'tbl' at .* unreachable"):
        await backend.ping()
    assert time.monotonic() - start < 10
    await backend.close()


# -- sizes (moto) ------------------------------------------------------------------------------


async def test_one_megabyte_value_goes_through_s3(ddb: DynamoDbBackend) -> None:
    """A 1 MB value is stored in S3 and read back by get, query, due and scan."""
    value = bytes(range(256)) * (4 * 1024)
    await ddb.write([Put("p", "big", value, due_ms=5)])
    raw = _raw(ddb, "p", "big")
    assert "b" not in raw
    digest, nonce = raw["r"]["S"].removeprefix("blobs/").split(".")
    assert (hashlib.sha256(value).hexdigest(), 16) == (digest, len(nonce))
    s3_object = ddb.blobs.client.get_object(Bucket="unit-blobs", Key=raw["r"]["S"])  # type: ignore[union-attr]
    assert value == s3_object["Body"].read()
    expected = Item("p", "big", value, 1, 5)
    assert expected == await ddb.get("p", "big")
    assert [expected] == await ddb.query("p")
    assert [expected] == await ddb.due(5, 10)
    assert [expected] == await ddb.scan("p", "big")


async def test_offloaded_value_in_transaction(ddb: DynamoDbBackend) -> None:
    """Offloading works inside a multi-op batch, and a conflict still applies nothing."""
    big = b"\x01" * MB
    await ddb.write([Put("p", "small", b"s"), Put("p", "big", big)])
    assert [Item("p", "big", big, 1), Item("p", "small", b"s", 1)] == await ddb.query("p")
    with pytest.raises(ConflictError) as info:
        await ddb.write([Put("p", "big", b"\x02" * MB, expect=1), Check("p", "small", 7)])
    assert 1 == info.value.index
    assert big == (await ddb.get("p", "big") or Item("", "", b"", 0)).value
    # Unconditional replacement (UpdateItem) switches between inline and offloaded storage.
    await ddb.write([Put("p", "big", b"inline", expect=None), Put("p", "x", big, expect=None)])
    assert "r" not in _raw(ddb, "p", "big") and "b" not in _raw(ddb, "p", "x")
    assert Item("p", "big", b"inline", 2) == await ddb.get("p", "big")
    await ddb.write([Put("p", "big", big, expect=None)])
    assert "b" not in _raw(ddb, "p", "big")
    assert Item("p", "big", big, 3) == await ddb.get("p", "big")


async def test_batch_over_transaction_budget_offloads(ddb: DynamoDbBackend) -> None:
    """Twelve values of 340 KB (4 MB in all) fit one batch by offloading the largest."""
    values = [bytes([i]) * 340_000 for i in range(12)]
    await ddb.write([Put("p", f"k{i:02d}", v) for i, v in enumerate(values)])
    raws = [_raw(ddb, "p", f"k{i:02d}") for i in range(12)]
    assert 0 < sum("r" in raw for raw in raws) < 12
    assert values == [i.value for i in await ddb.query("p")]


async def test_too_large_without_bucket(mocked: None) -> None:
    """Without a bucket a value over the inline limit raises ValueTooLargeError naming the fix."""
    backend = open_backend("dynamodb://unit-table?region=us-east-1")
    assert isinstance(backend, DynamoDbBackend)
    assert INLINE_MAX_BYTES == backend.max_value_bytes
    with pytest.raises(ValueTooLargeError, match=r"400 KB.*bucket="):
        await backend.write([Put("p", "big", b"x" * (INLINE_MAX_BYTES + 1))])
    await backend.write([Put("p", "max", b"x" * INLINE_MAX_BYTES)])
    many = [Put("p", f"k{i}", b"x" * 340_000) for i in range(12)]
    with pytest.raises(ValueTooLargeError, match="4 MB"):
        await backend.write(many)
    assert [] == await backend.query("p", "k")
    await backend.close()


async def test_batch_of_101_is_value_error(ddb: DynamoDbBackend) -> None:
    """TransactWriteItems takes 100 operations: 101 is a ValueError before any I/O."""
    assert 100 == ddb.max_batch_ops
    await ddb.write([Put("p", f"k{i:03d}", b"v") for i in range(100)])
    with pytest.raises(ValueError, match="at most 100"):
        await ddb.write([Put("q", f"k{i:03d}", b"v") for i in range(101)])
    assert [] == await ddb.query("q")


async def test_overlong_keys_are_value_errors(ddb: DynamoDbBackend) -> None:
    """Keys beyond DynamoDB's 2048 / 1024 bytes raise ValueError."""
    with pytest.raises(ValueError, match="sk is longer"):
        await ddb.write([Put("p", "s" * 1025, b"v")])
    with pytest.raises(ValueError, match="pk is longer"):
        await ddb.get("p" * 2049, "s")


# -- against DynamoDB Local --------------------------------------------------------------------


async def test_nul_keys_on_dynamodb_local() -> None:
    """Escaped keys (empty, NUL-led) sort, page and prefix-match correctly on the real thing."""
    async with dynamodb_backend() as backend:
        keys = ["", "\x00", "\x00\x00", "\x00a", "\x01", "a"]
        await backend.write([Put(k, k, b"v") for k in keys])
        await backend.write([Put("p", k, b"v") for k in keys])
        assert keys == [i.sk for i in await backend.query("p")]
        assert ["\x00", "\x00\x00", "\x00a"] == [i.sk for i in await backend.query("p", "\x00")]
        assert ["\x00a"] == [i.sk for i in await backend.query("p", "\x00", after="\x00\x00")]
        assert ["\x00"] == [i.pk for i in await backend.scan("\x00", "\x00")]
        assert ["", "p"] == [i.pk for i in await backend.scan("", "")]


async def test_due_ties_across_pages_on_dynamodb_local() -> None:
    """Many items with one due time: due() returns the (pk, sk)-smallest, across shards."""
    async with dynamodb_backend() as backend:
        for start in range(0, 60, 20):
            await backend.write(
                [Put(f"inv/{i:03d}", "meta", b"m", due_ms=7) for i in range(start, start + 20)]
            )
        got = await backend.due(7, 5)
        assert [f"inv/{i:03d}" for i in range(5)] == [i.pk for i in got]
        assert 60 == len(await backend.due(100, 100))


async def test_offload_on_dynamodb_local() -> None:
    """A 1 MB value round-trips through DynamoDB Local + S3 (moto), alone and in a batch."""
    async with dynamodb_backend(bucket=True) as backend:
        big = b"\xab" * MB
        await backend.write([Put("p", "a", big)])
        await backend.write([Put("p", "a", big + b"!", expect=1), Put("p", "b", b"x")])
        assert [Item("p", "a", big + b"!", 2), Item("p", "b", b"x", 1)] == await backend.query("p")
        await backend.write([Delete("p", "a", expect=2)])
        assert await backend.get("p", "a") is None


# -- error mapping (fake client) ---------------------------------------------------------------


def _client_error(code: str, operation: str, **extra: Any) -> Exception:
    from botocore.exceptions import ClientError

    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": 400, "RetryAttempts": extra.pop("retries", 0)},
        **extra,
    }
    error: Exception = ClientError(response, operation)
    return error


class FakeClient:
    """Answers each named method from a queue of results (exceptions are raised)."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            result = self.script[name].pop(0)
            if isinstance(result, Exception):
                raise result
            return result

        return call


def _fake_backend(**script: list[Any]) -> tuple[DynamoDbBackend, FakeClient]:
    client = FakeClient(**script)
    return DynamoDbBackend("fake-table", client=client, owns_clients=False), client


async def test_throttling_is_unavailable() -> None:
    """Throttling (after botocore's retries) becomes BackendUnavailableError."""
    backend, _ = _fake_backend(
        get_item=[_client_error("ProvisionedThroughputExceededException", "GetItem")]
    )
    with pytest.raises(BackendUnavailableError, match="ProvisionedThroughputExceeded"):
        await backend.get("p", "s")
    await backend.close()


async def test_transaction_conflict_is_retried() -> None:
    """TransactionConflict cancels without applying anything: retried, then it succeeds."""
    conflict = _client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}],
    )
    backend, client = _fake_backend(transact_write_items=[conflict, conflict, {}])
    await backend.write([Put("p", "a", b"1"), Put("p", "b", b"2")])
    assert 3 == len(client.calls)
    await backend.close()


async def test_transaction_conflict_gives_up_as_unavailable() -> None:
    """Persistent TransactionConflict ends in BackendUnavailableError, not a ConflictError."""
    conflict = _client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}],
    )
    backend, _ = _fake_backend(transact_write_items=[conflict] * 10)
    with pytest.raises(BackendUnavailableError, match="TransactionConflict"):
        await backend.write([Put("p", "a", b"1"), Put("p", "b", b"2")])
    await backend.close()


async def test_cancellation_reason_names_the_index() -> None:
    """The first ConditionalCheckFailed reason is the ConflictError's index."""
    cancelled = _client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[
            {"Code": "None"},
            {"Code": "None"},
            {"Code": "ConditionalCheckFailed"},
            {"Code": "ConditionalCheckFailed"},
        ],
    )
    backend, _ = _fake_backend(transact_write_items=[cancelled])
    with pytest.raises(ConflictError) as info:
        await backend.write([Put("p", str(i), b"v") for i in range(4)])
    assert 2 == info.value.index
    await backend.close()


async def test_retried_put_that_applied_is_a_success() -> None:
    """A conditional PutItem retried by botocore after its first attempt applied succeeds."""
    written = {
        "pk": {"S": "p"},
        "sk": {"S": "a"},
        "v": {"N": "2"},
        "b": {"B": b"new"},
    }
    ccf = "ConditionalCheckFailedException"
    backend, _ = _fake_backend(
        put_item=[
            _client_error(ccf, "PutItem", Item=written, retries=1),
            _client_error(ccf, "PutItem", Item=written, retries=0),
            _client_error(ccf, "PutItem", Item={**written, "b": {"B": b"other"}}, retries=1),
        ]
    )
    await backend.write([Put("p", "a", b"new", expect=1)])  # retried, ours: success
    with pytest.raises(ConflictError, match="found at version 2"):  # not retried: genuine
        await backend.write([Put("p", "a", b"new", expect=1)])
    with pytest.raises(ConflictError):  # retried, but someone else's item
        await backend.write([Put("p", "a", b"new", expect=1)])
    await backend.close()


async def test_claims_use_idempotent_transactions() -> None:
    """A single Delete with expect=n goes through TransactWriteItems (ClientRequestToken)."""
    backend, client = _fake_backend(transact_write_items=[{}], delete_item=[{}])
    await backend.write([Delete("p", "t", expect=3)])
    await backend.write([Delete("p", "u")])
    assert ["transact_write_items", "delete_item"] == [name for name, _ in client.calls]
    await backend.close()


async def test_single_write_colliding_with_a_transaction_is_retried() -> None:
    """TransactionConflictException on PutItem (an in-flight transaction) is retried here."""
    collision = _client_error("TransactionConflictException", "PutItem")
    backend, client = _fake_backend(put_item=[collision, {}])
    await backend.write([Put("p", "a", b"1")])
    assert 2 == len(client.calls)
    backend2, _ = _fake_backend(put_item=[collision] * 10)
    with pytest.raises(BackendUnavailableError, match="colliding"):
        await backend2.write([Put("p", "a", b"1")])
    await backend.close()
    await backend2.close()


# -- item expiry (TTL) -------------------------------------------------------------------------


async def test_expiry_is_the_ttl_attribute(ddb: DynamoDbBackend) -> None:
    """Put.expires_ms becomes the TTL attribute (``xt``, epoch seconds); a rewrite drops it."""
    await ddb.write([Put("p", "a", b"v", expires_ms=1_700_000_000_001)])
    assert {"N": "1700000001"} == _raw(ddb, "p", "a")["xt"]
    await ddb.write([Put("p", "a", b"w", expect=1)])
    assert "xt" not in _raw(ddb, "p", "a")
    await ddb.write([Put("p", "a", b"x", expect=None, expires_ms=2_000)])
    assert {"N": "2"} == _raw(ddb, "p", "a")["xt"]
    await ddb.write([Put("p", "a", b"y", expect=None)])
    assert "xt" not in _raw(ddb, "p", "a")


def test_provisioning_enables_ttl(mocked: None) -> None:
    """storage init turns TTL on for the ``xt`` attribute, as the SAM template declares."""
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1")
    ttl = client.describe_time_to_live(TableName="unit-table")["TimeToLiveDescription"]
    assert ("ENABLED", "xt") == (ttl["TimeToLiveStatus"], ttl["AttributeName"])
    assert {"AttributeName": "xt", "Enabled": True} == table_definition()["Properties"][
        "TimeToLiveSpecification"
    ]
