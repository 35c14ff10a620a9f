"""Invocation / awakeable / deployment ids in Restate's string formats."""

from __future__ import annotations

import pytest

from restate_lambda.protocol import AwakeableId, DeploymentId, InvocationId, encode_awakeable_id
from restate_lambda.protocol.ids import (
    SubscriptionId,
    base62_decode_fixed,
    base62_encode_fixed,
    is_invocation_id,
)

# Ids printed by Restate itself (restatedev/restate sources and docs).
RESTATE_INVOCATION_IDS = [
    "inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j",
    "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz",
]


@pytest.mark.parametrize("text", RESTATE_INVOCATION_IDS)
def test_restate_invocation_ids_round_trip(text: str) -> None:
    inv = InvocationId.parse(text)
    assert str(inv) == text
    assert len(text) == InvocationId.STR_LEN
    assert InvocationId.from_bytes(inv.to_bytes()) == inv
    # their uuids are ULIDs; a correct decoding yields a plausible creation time (2024-2026)
    assert 1_700_000_000_000 < inv.timestamp_ms < 1_800_000_000_000


def test_known_decoding() -> None:
    inv = InvocationId.parse("inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j")
    assert inv.partition_key == 0x539A3B9A5842C2B5
    assert inv.uuid == 0x019BB8D08D1F5CE48C857E07F175FF12
    assert inv.to_bytes().hex() == "539a3b9a5842c2b5019bb8d08d1f5ce48c857e07f175ff12"


def test_restate_deployment_id_round_trip() -> None:
    dp = DeploymentId.parse("dp_11nGQpCRmau6ypL82KH2TnP")
    assert str(dp) == "dp_11nGQpCRmau6ypL82KH2TnP"
    assert 1_700_000_000_000 < dp.timestamp_ms < 1_800_000_000_000
    with pytest.raises(ValueError, match="characters"):
        DeploymentId.parse("dp_11nGQpCRmau6ypL82KH2TnP123456")


def test_new_and_derive() -> None:
    a = InvocationId.new(now_ms=1_767_225_600_000)
    assert a.timestamp_ms == 1_767_225_600_000
    assert InvocationId.parse(str(a)) == a
    assert InvocationId.new(partition_key=42).partition_key == 42
    assert InvocationId.new() != InvocationId.new()
    d1 = InvocationId.derive("Greeter", "greet", b"idem-1")
    assert d1 == InvocationId.derive("Greeter", "greet", b"idem-1")
    assert d1 != InvocationId.derive("Greeter", "greetidem-1")  # parts are length-prefixed
    assert InvocationId.parse(str(d1)) == d1
    assert DeploymentId.derive("x") == DeploymentId.derive("x")
    s = SubscriptionId.new()
    assert str(s).startswith("sub_1") and SubscriptionId.parse(str(s)) == s


def test_extremes_round_trip() -> None:
    for pk, uuid in [(0, 1), ((1 << 64) - 1, (1 << 128) - 1), (1, 1 << 127), (255, 256)]:
        inv = InvocationId(pk, uuid)
        assert len(str(inv)) == 38
        assert InvocationId.parse(str(inv)) == inv
    for n in (0, 1, 61, 62, (1 << 64) - 1):
        assert base62_decode_fixed(base62_encode_fixed(n, 8), 8) == n
        assert len(base62_encode_fixed(n, 8)) == 11


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "inv",
        "inv_",
        "mxvgUOrwIb8",
        "inv_ub23411ba",  # wrong scheme version
        "inv_1b234d1ba",  # too short
        "dp_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j",  # wrong resource
        "inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j0",  # too long
        "inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5!",  # bad character
        "inv_1zzzzzzzzzzzzBGdilypucn1EeT7AO5j00",  # partition key overflows u64
    ],
)
def test_reject_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="invocation id"):
        InvocationId.parse(bad)
    assert not is_invocation_id(bad)


def test_from_bytes_length_checked() -> None:
    with pytest.raises(ValueError, match="24 bytes"):
        InvocationId.from_bytes(b"\x00" * 16)


def test_awakeable_id_format() -> None:
    inv = InvocationId.parse("inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j")
    text = encode_awakeable_id(inv.to_bytes(), 17)
    assert text.startswith("sign_1") and "=" not in text
    parsed = AwakeableId.parse(text)
    assert parsed == AwakeableId(inv, 17)
    assert str(parsed) == text
    # padding is tolerated on input
    assert AwakeableId.parse(text + "==") == parsed


def test_legacy_awakeable_id_from_spec() -> None:
    # example from sdk-shared-core docs/service-invocation-protocol.md
    text = "prom_1NMyOAvDK2CcBjUH4Rmb7eGBp0DNNDnmsAAAAAQ"
    parsed = AwakeableId.parse(text)
    assert parsed.legacy and parsed.signal_index == 1
    assert str(parsed) == text


@pytest.mark.parametrize(
    "bad",
    ["", "sign_1", "sign_2AAAA", "inv_1AAAA", "sign_1!!!!", "sign_1AAAA", "sign_1" + "A" * 50],
)
def test_awakeable_reject_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="awakeable id"):
        AwakeableId.parse(bad)
