"""Invocation ids: random and derived ids, their raw bytes (``StartMessage.id``)."""

from __future__ import annotations

import pytest

from invoker import ids
from restate_lambda.protocol.ids import InvocationId


def test_a_new_id_s_raw_bytes_are_those_of_its_text() -> None:
    made = [ids.new_invocation_id() for _ in range(50)]
    assert len(set(made)) == 50
    for text in made:
        assert ids.invocation_id_bytes(text) == InvocationId.parse(text).to_bytes()


def test_raw_bytes_of_an_id_made_elsewhere_and_after_the_cache_fills() -> None:
    derived = ids.child_invocation_id(ids.new_invocation_id(), 3)
    assert ids.invocation_id_bytes(derived) == InvocationId.parse(derived).to_bytes()
    many = [ids.new_invocation_id() for _ in range(ids._RAW_MAX + 10)]
    assert len(ids._RAW) <= ids._RAW_MAX
    for text in (many[0], many[-1], derived):
        assert ids.invocation_id_bytes(text) == InvocationId.parse(text).to_bytes()


def test_a_malformed_id_has_no_bytes() -> None:
    with pytest.raises(ValueError, match="malformed invocation id"):
        ids.invocation_id_bytes("inv_1short")
