"""Where the request-identity key lives: creation, loading, the CLI, storage init and AWS wiring."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from typer.testing import CliRunner

from infra import identity_keys
from infra.cli_identity import identity_app
from infra.identity_keys import (
    ENV_VAR,
    KeySourceError,
    dev_key_path,
    dev_signer,
    ensure_key,
    ensure_key_file,
    ensure_ssm_key,
    load_signer,
    signer_from_env,
)
from invoker.request_identity import KeyFormatError, RequestSigner, generate_pem

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process SSM."""
    from moto import mock_aws

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RESTATE_LAMBDA_SSM_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


# ------------------------------------------------------------------------------ files


def test_key_file_is_private_complete_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "identity.pem"
    assert ensure_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ensure_key_file(path) is False
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["identity.pem"]  # no temp files left


def test_concurrent_creation_leaves_one_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(ensure_key_file(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    RequestSigner.from_pem(path.read_bytes())
    assert len(list(tmp_path.iterdir())) == 1


def test_dev_signer_makes_the_key_once_and_keeps_it(tmp_path: Path) -> None:
    first = dev_signer(tmp_path)
    assert first is not None and dev_key_path(tmp_path).is_file()
    again = dev_signer(tmp_path)
    assert again is not None and again.public_key == first.public_key  # a restart signs alike
    other = tmp_path / "shared.pem"
    other.write_bytes(generate_pem())
    from_env = dev_signer(tmp_path, env={ENV_VAR: f"file:{other}"})
    assert from_env is not None
    assert from_env.public_key == RequestSigner.from_pem(other.read_bytes()).public_key
    assert from_env.public_key != first.public_key


def test_dev_without_cryptography_runs_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cryptography", None)  # import cryptography -> ImportError
    assert dev_signer(tmp_path) is None
    assert not dev_key_path(tmp_path).exists()


def test_key_sources(tmp_path: Path) -> None:
    pem = generate_pem()
    path = tmp_path / "k.pem"
    path.write_bytes(pem)
    expected = RequestSigner.from_pem(pem).public_key
    for source in (str(path), f"file:{path}", pem.decode()):
        assert load_signer(source).public_key == expected
    assert signer_from_env({ENV_VAR: str(path)}).public_key == expected  # type: ignore[union-attr]
    assert signer_from_env({ENV_VAR: "  "}) is None and signer_from_env({}) is None
    with pytest.raises(KeySourceError, match="no key file"):
        load_signer(str(tmp_path / "missing.pem"))
    with pytest.raises(KeySourceError, match="parameter name"):
        load_signer("ssm:")
    rsa = generate_private_key(65537, 2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="not Ed25519"):
        load_signer(rsa.decode())
    assert ensure_key(pem.decode()) is False  # an inline PEM exists by definition


# ------------------------------------------------------------------------------ SSM


def test_ssm_parameter_is_created_once_as_secure_string(ssm: None) -> None:
    import boto3

    name = "/restate-lambda/request-identity"
    assert ensure_ssm_key(name) is True
    client = boto3.client("ssm")
    stored = client.get_parameter(Name=name)["Parameter"]
    assert stored["Type"] == "SecureString"
    value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert ensure_key(f"ssm:{name}") is False
    assert client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == value
    signer = load_signer(f"ssm:{name}")
    assert signer.public_key == RequestSigner.from_pem(value).public_key
    with pytest.raises(KeySourceError, match="no SSM parameter"):
        load_signer("ssm:/not/there")


# ------------------------------------------------------------------------------ CLI


def test_cli_init_then_show(tmp_path: Path) -> None:
    result = runner.invoke(identity_app, ["show", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "identity init" in result.output and "Traceback" not in result.output
    result = runner.invoke(identity_app, ["init", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    public = result.stdout.strip().splitlines()[-1]
    assert public.startswith("publickeyv1_") and "created" in result.output
    assert public == RequestSigner.from_pem(dev_key_path(tmp_path).read_bytes()).public_key
    again = runner.invoke(identity_app, ["init", "--data-dir", str(tmp_path)])
    assert again.exit_code == 0 and "exists" in again.output
    assert again.stdout.strip().splitlines()[-1] == public
    shown = runner.invoke(identity_app, ["show", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0 and shown.stdout.strip() == public


def test_cli_key_option_environment_and_bad_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runtime.pem"
    path.write_bytes(generate_pem())
    public = load_signer(str(path)).public_key
    result = runner.invoke(identity_app, ["show", "--key", str(path)])
    assert result.exit_code == 0 and result.stdout.strip() == public
    monkeypatch.setenv(ENV_VAR, f"file:{path}")
    result = runner.invoke(identity_app, ["show", "--data-dir", str(tmp_path / "unused")])
    assert result.exit_code == 0 and result.stdout.strip() == public
    monkeypatch.delenv(ENV_VAR)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    result = runner.invoke(identity_app, ["show", "--key", str(bad)])
    assert result.exit_code == 2 and "PEM" in result.output and "Traceback" not in result.output


def test_cli_ssm(ssm: None) -> None:
    result = runner.invoke(identity_app, ["init", "--key", "ssm:/app/identity"])
    assert result.exit_code == 0, result.output
    public = result.stdout.strip().splitlines()[-1]
    shown = runner.invoke(identity_app, ["show", "--key", "ssm:/app/identity"])
    assert shown.exit_code == 0 and shown.stdout.strip() == public


def test_cli_ssm_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("RESTATE_LAMBDA_SSM_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = runner.invoke(identity_app, ["show", "--key", "ssm:/x", "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "cannot read ssm:/x" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------ storage init


def test_storage_init_creates_the_named_key(tmp_path: Path) -> None:
    from infra.provision import IDENTITY_ENV_VAR, ensure_storage

    assert IDENTITY_ENV_VAR == ENV_VAR
    assert ensure_storage("memory://") == ["memory: ready"]
    key = tmp_path / "identity.pem"
    lines = ensure_storage("memory://", identity_key=str(key))
    public = load_signer(str(key)).public_key
    assert lines == ["memory: ready", f"request identity key {key}: created, {public}"]
    lines = ensure_storage("memory://", env={ENV_VAR: str(key)})
    assert lines[-1] == f"request identity key {key}: exists, {public}"


# ------------------------------------------------------------------------------ AWS runtime


def test_aws_runtime_signs_with_the_configured_key(tmp_path: Path) -> None:
    from backends.memory import MemoryBackend
    from infra.aws_runtime import AwsRuntime
    from infra.settings import AwsSettings
    from restate_lambda.clock import SystemClock

    key = tmp_path / "identity.pem"
    ensure_key_file(key)
    base = {
        "RESTATE_LAMBDA_STORAGE": "memory://",
        "RESTATE_LAMBDA_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
    }
    settings = AwsSettings.from_env({**base, ENV_VAR: f"file:{key}"})
    assert settings.request_identity_key == f"file:{key}"
    runtime = AwsRuntime(settings, backend=MemoryBackend(), sqs_client=object())
    signer = runtime.engine.transports.signer
    assert signer is not None and signer.public_key == load_signer(str(key)).public_key
    # wall time, whatever the runtime's clock: the SDK checks tokens against wall time
    assert isinstance(signer._clock, SystemClock)
    unsigned = AwsRuntime(AwsSettings.from_env(base), backend=MemoryBackend(), sqs_client=object())
    assert unsigned.engine.transports.signer is None


def test_module_reads_nothing_at_import() -> None:
    """Importing the key modules touches no file, environment or AWS, and loads neither boto3
    nor cryptography (the "identity" extra is needed only once a key is used)."""
    import subprocess
    import sys

    code = (
        "import sys, infra.identity_keys, infra.cli_identity, invoker.transport; "
        "print(','.join(m for m in sys.modules "
        "if m.split('.')[0] in ('boto3', 'botocore', 'cryptography')))"
    )
    env = {**os.environ, ENV_VAR: "ssm:/would/fail"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""
    assert identity_keys.DEV_KEY_FILE == "identity.pem"
