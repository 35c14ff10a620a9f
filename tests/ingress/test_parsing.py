"""Unit tests of the ingress's small parsers: delays, ids, content-type rules, paths."""

from __future__ import annotations

import pytest

from ingress.content_type import InputValidationError, content_type_matches, validate_input
from ingress.durations import DurationError, parse_delay_ms
from ingress.ids import IdError, check_awakeable_id, check_invocation_id
from ingress.paths import split_raw_path
from invoker.api import HandlerInput


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("1h 30m", 5_400_000),
        ("1.5s", 1_500),
        ("2 days", 172_800_000),
        ("500ms", 500),
        ("1500us", 1),
        ("PT10S", 10_000),
        ("pt0.5s", 500),
        ("P1D", 86_400_000),
        ("P1DT1H", 90_000_000),
        ("PT1M30S", 90_000),
    ],
)
def test_parse_delay(text: str, ms: int) -> None:
    assert parse_delay_ms(text) == ms


@pytest.mark.parametrize("text", ["", " ", "10", "abc", "P", "PT", "P1DT", "-1s", "1x", "s"])
def test_parse_delay_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_delay_ms(text)


def test_invocation_ids() -> None:
    check_invocation_id("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz")
    for bad in ("inv_", "inv_2gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "dp_1x", "inv_1gdJB"):
        with pytest.raises(IdError):
            check_invocation_id(bad)


def test_awakeable_ids() -> None:
    check_awakeable_id("sign_1AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw")
    for bad in ("sign_", "sign_1", "sign_1!!!!", "prom_2AAEC", "sign_1AAECAwQ"):
        with pytest.raises(IdError):
            check_awakeable_id(bad)


@pytest.mark.parametrize(
    ("actual", "pattern", "ok"),
    [
        ("application/json", "application/json", True),
        ("application/json; charset=utf-8", "application/json", True),
        ("APPLICATION/JSON", "application/json", True),
        ("text/plain", "application/json", False),
        ("application/octet-stream", "*/*", True),
        ("text/csv", "text/*", True),
        ("image/png", "text/*", False),
    ],
)
def test_content_type_matches(actual: str, pattern: str, ok: bool) -> None:
    assert content_type_matches(actual, pattern) is ok


def test_validate_input_variants() -> None:
    any_type = HandlerInput(content_type=None, json=False)
    validate_input(any_type, b"raw", "application/octet-stream")
    validate_input(any_type, b"", "application/octet-stream")
    with pytest.raises(InputValidationError):
        validate_input(any_type, b"raw", None)
    required = HandlerInput(required=True)
    with pytest.raises(InputValidationError, match="Empty body not allowed"):
        validate_input(required, b"", None)
    validate_input(HandlerInput(), b"", None)
    validate_input(HandlerInput(accepts_body=False), b"", None)


def test_split_raw_path() -> None:
    assert split_raw_path(b"/Obj/a%2Fb/h?x=1") == ["Obj", "a/b", "h"]
    assert split_raw_path(b"/Svc/h/") == ["Svc", "h"]
    assert split_raw_path(b"/") == []
    assert split_raw_path(b"/Obj/%E2%98%83/h") == ["Obj", "☃", "h"]
