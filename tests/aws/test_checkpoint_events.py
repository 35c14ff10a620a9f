"""Checkpoint events at the runtime's Lambda entry points: routing, and clear answers to
malformed events (never a traceback)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from infra import lambdas
from infra.checkpoint_events import (
    InvalidCheckpointEvent,
    handle_checkpoint_event,
    is_checkpoint_event,
    parse,
)
from infra.settings import AwsSettings
from invoker.api import BadRequestError, ConflictingRequestError
from restate_lambda.checkpoint import CheckpointBatch
from restate_lambda.checkpoint_lambda import checkpoint_event

GOOD = checkpoint_event(CheckpointBatch("inv_1", "tok", 3, b"frames", 6))


class _Engine:
    """The engine's ``checkpoint``, scripted."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, int, bytes]] = []

    async def checkpoint(self, inv: str, token: str, index: int, frames: bytes) -> bytes:
        self.calls.append((inv, token, index, frames))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        result: bytes = self.outcome
        return result


class _Runtime:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def checkpoint(self, event: Any, context: Any) -> dict[str, Any]:
        self.calls.append("checkpoint")
        return {"status": 200, "body": ""}

    def __getattr__(self, entry: str) -> Any:
        def call(event: Any, context: Any) -> dict[str, Any]:
            self.calls.append(entry)
            return {}

        return call


def _body(answer: dict[str, Any]) -> str:
    return base64.b64decode(answer["body"]).decode()


def test_parse_a_checkpoint_event() -> None:
    assert is_checkpoint_event(GOOD) and not is_checkpoint_event({"Records": []})
    assert parse(GOOD) == ("inv_1", "tok", 3, b"frames")


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        ({"restate_lambda_checkpoint": "nope"}, "{headers, body}"),
        ({"restate_lambda_checkpoint": {"body": ""}}, "no 'headers'"),
        ({"restate_lambda_checkpoint": {"headers": {}, "body": ""}}, "needs the headers"),
        (
            {"restate_lambda_checkpoint": {**GOOD["restate_lambda_checkpoint"], "body": "%%"}},
            "not base64",
        ),
        ({"restate_lambda_checkpoint": {**GOOD["restate_lambda_checkpoint"], "body": 7}}, "body"),
    ],
)
async def test_a_malformed_event_is_answered_400(event: Any, complaint: str) -> None:
    with pytest.raises(InvalidCheckpointEvent, match=complaint.replace("{", r"\{")):
        parse(event)
    engine = _Engine(b"")
    answer = await handle_checkpoint_event(engine, event)  # type: ignore[arg-type]
    assert answer["status"] == 400 and complaint in _body(answer)
    assert engine.calls == []


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (b"notes", 200),
        (ConflictingRequestError("the attempt of inv_1 was fenced off"), 409),
        (BadRequestError("malformed checkpoint"), 400),
        (RuntimeError("the store kept failing"), 503),
    ],
)
async def test_the_engine_outcome_maps_to_a_status(outcome: Any, status: int) -> None:
    engine = _Engine(outcome)
    answer = await handle_checkpoint_event(engine, GOOD)  # type: ignore[arg-type]
    assert answer["status"] == status
    assert engine.calls == [("inv_1", "tok", 3, b"frames")]
    if status == 200:
        assert _body(answer) == "notes"


def test_entry_points_route_checkpoint_events(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _Runtime()
    lambdas.set_runtime(rt)  # type: ignore[arg-type]
    try:
        lambdas.ingress_handler(GOOD, None)
        lambdas.worker_handler(GOOD, None)
        lambdas.admin_handler(GOOD, None)
        lambdas.checkpoint_handler({"not": "a checkpoint"}, None)
        lambdas.worker_handler({"Records": []}, None)
        lambdas.ingress_handler({"rawPath": "/"}, None)
    finally:
        lambdas.set_runtime(None)
    assert rt.calls == ["checkpoint"] * 4 + ["worker", "ingress"]


def test_the_checkpoint_target() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:worker"
    base = {"RESTATE_LAMBDA_STORAGE": "memory://"}
    assert AwsSettings.from_env(base).checkpoint_target(arn) == arn
    assert AwsSettings.from_env(base).checkpoint_target(None) is None
    other = {**base, "RESTATE_LAMBDA_CHECKPOINT_URL": "arn:aws:lambda:us-east-1:1:function:c"}
    assert (
        AwsSettings.from_env(other).checkpoint_target(arn) == other["RESTATE_LAMBDA_CHECKPOINT_URL"]
    )
    off = {**base, "RESTATE_LAMBDA_CHECKPOINT_URL": "off"}
    assert AwsSettings.from_env(off).checkpoint_target(arn) is None


def test_a_malformed_event_through_the_runtime_is_answered() -> None:
    """The whole path of the entry point on a real runtime (memory store): a 400 answer."""
    from infra.aws_runtime import AwsRuntime

    settings = AwsSettings.from_env(
        {
            "RESTATE_LAMBDA_STORAGE": "memory://",
            "RESTATE_LAMBDA_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
            "AWS_REGION": "us-east-1",
        }
    )
    rt = AwsRuntime(settings, sqs_client=object())
    try:
        answer = rt.checkpoint({"restate_lambda_checkpoint": {"headers": []}}, None)
        assert answer["status"] == 400 and "headers" in _body(answer)
        unknown = checkpoint_event(CheckpointBatch("inv_1", "tok", 3, b"", 6))
        fenced = rt.checkpoint(unknown, None)  # no such invocation: fenced off
        assert fenced["status"] == 409, _body(fenced)
    finally:
        rt.close()
