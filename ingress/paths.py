"""Parsing ingress request paths into routes (keys are URL-decoded per segment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from ingress.errors import IngressHttpError
from invoker.api import Target

ReadMode = Literal["attach", "output"]

_NEW_API_BAD_PATH = (
    "bad path, expected /restate/call/:service/:handler, /restate/send/:service/:handler, "
    "/restate/attach/:invocation_id, /restate/output/:invocation_id, or /restate/lookup"
)
LEGACY_BAD_PATH = (
    "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
)


@dataclass(frozen=True, slots=True)
class HealthRoute:
    """``GET /restate/health``."""


@dataclass(frozen=True, slots=True)
class CheckpointRoute:
    """``POST /restate-lambda/checkpoint``: a handler's checkpoint (restate-lambda's own; see
    :mod:`restate_lambda.checkpoint`)."""


@dataclass(frozen=True, slots=True)
class LegacyInvokeRoute:
    """``/{Svc}/{handler}[/send]`` or ``/{Obj}/{key}/{handler}[/send]``; needs the service type."""

    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InvokeRoute:
    """A fully resolved call or send."""

    target: Target
    send: bool


@dataclass(frozen=True, slots=True)
class ByInvocationId:
    """An invocation addressed by its id."""

    invocation_id: str


@dataclass(frozen=True, slots=True)
class ByWorkflow:
    """The run of workflow ``name`` with id ``key``."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class ByIdempotencyKey:
    """The invocation an idempotent request to ``target`` created."""

    target: Target
    idempotency_key: str


InvocationRef = ByInvocationId | ByWorkflow | ByIdempotencyKey


@dataclass(frozen=True, slots=True)
class ReadRoute:
    """Attach to or fetch the output of an invocation (``GET`` forms)."""

    ref: InvocationRef
    mode: ReadMode


@dataclass(frozen=True, slots=True)
class JsonTargetRoute:
    """``POST /restate/attach|output|lookup`` with a JSON body naming the invocation."""

    mode: Literal["attach", "output", "lookup"]


@dataclass(frozen=True, slots=True)
class AwakeableRoute:
    """``POST /restate/awakeables/{id}/resolve|reject`` (alias ``/restate/a/...``)."""

    awakeable_id: str
    action: Literal["resolve", "reject"]


IngressRoute = (
    HealthRoute
    | LegacyInvokeRoute
    | InvokeRoute
    | ReadRoute
    | JsonTargetRoute
    | AwakeableRoute
    | CheckpointRoute
)


def split_raw_path(raw_path: bytes) -> list[str]:
    """URL-decoded path segments of a raw request path (``%2F`` stays inside a segment)."""
    text = raw_path.decode("latin-1").split("?", 1)[0]
    parts = text.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    return [unquote(p, encoding="utf-8", errors="replace") for p in parts]


def _not_found() -> IngressHttpError:
    return IngressHttpError(404, "not found")


def _target(parts: list[str]) -> Target:
    if len(parts) == 2:
        return Target(service=parts[0], handler=parts[1])
    return Target(service=parts[0], key=parts[1], handler=parts[2])


def _invocation_read(parts: list[str]) -> ReadRoute:
    """``/restate/invocation/...`` (after the ``invocation`` segment)."""
    if not parts or parts[-1] not in ("attach", "output"):
        raise _not_found()
    mode: ReadMode = "attach" if parts[-1] == "attach" else "output"
    head = parts[:-1]
    if len(head) == 1:
        return ReadRoute(ByInvocationId(head[0]), mode)
    if len(head) in (3, 4):
        return ReadRoute(ByIdempotencyKey(_target(head[:-1]), head[-1]), mode)
    raise _not_found()


def _restate_route(parts: list[str], method: str) -> IngressRoute:
    """Routes under ``/restate/``."""
    if not parts:
        raise _not_found()
    head, rest = parts[0], parts[1:]
    if head == "health" and not rest:
        return HealthRoute()
    if head in ("call", "send"):
        if len(rest) not in (2, 3):
            raise IngressHttpError(400, _NEW_API_BAD_PATH)
        return InvokeRoute(_target(rest), send=head == "send")
    if head in ("attach", "output", "lookup") and not rest:
        if method != "POST":
            raise IngressHttpError(405, "method not allowed")
        json_mode: Literal["attach", "output", "lookup"] = (
            "attach" if head == "attach" else "output" if head == "output" else "lookup"
        )
        return JsonTargetRoute(json_mode)
    if head in ("attach", "output") and len(rest) == 1:
        read_mode: ReadMode = "attach" if head == "attach" else "output"
        return ReadRoute(ByInvocationId(rest[0]), read_mode)
    if head == "invocation":
        return _invocation_read(rest)
    if head == "workflow" and len(rest) == 3 and rest[2] in ("attach", "output"):
        mode: ReadMode = "attach" if rest[2] == "attach" else "output"
        return ReadRoute(ByWorkflow(rest[0], rest[1]), mode)
    if head in ("awakeables", "a") and len(rest) == 2 and rest[1] in ("resolve", "reject"):
        return AwakeableRoute(rest[0], "resolve" if rest[1] == "resolve" else "reject")
    raise _not_found()


def parse_route(segments: list[str], method: str) -> IngressRoute:
    """The route for decoded path ``segments``; raises :class:`IngressHttpError` if none."""
    if not segments:
        raise IngressHttpError(400, "bad path: /")
    if segments[0] == "restate":
        return _restate_route(segments[1:], method)
    if segments == ["restate-lambda", "checkpoint"]:
        return CheckpointRoute()
    if len(segments) < 2 or len(segments) > 4:
        raise IngressHttpError(400, LEGACY_BAD_PATH)
    return LegacyInvokeRoute(tuple(segments))
