"""The admin API's shapes of cron schedules: a schedule as JSON, and a ``POST /schedules`` body
validated into :meth:`invoker.schedules.Schedules.build` arguments."""

from __future__ import annotations

import json
from typing import Any

from invoker import records as rec
from invoker.api import BadRequestError, Target
from invoker.cron import iso


def schedule_json(s: rec.ScheduleRecord) -> dict[str, Any]:
    """A schedule as the admin API shows it."""
    body: Any = None
    if s.body:
        try:
            body = json.loads(s.body)
        except ValueError:
            body = s.body.decode("utf-8", "replace")
    return {
        "id": s.id,
        "cron": s.cron,
        "timezone": s.timezone,
        "target": {"service": s.service, "handler": s.handler, "key": s.key},
        "body": body,
        "missed_ticks": s.missed_ticks,
        "max_catch_up": s.max_catch_up,
        "paused": s.paused,
        "next_tick": None if s.paused else iso(s.next_ms),
        "last_tick": iso(s.last_tick_ms),
        "last_invocation_id": s.last_invocation_id,
        "fired": s.fired,
        "skipped": s.skipped,
        "origin": s.origin,
        "created_at": iso(s.created_ms),
        "modified_at": iso(s.modified_ms),
    }


def parse_target(raw: Any) -> Target:
    """A target from the admin API: ``"Svc/handler"``, ``"Obj/key/handler"`` (also with a
    ``service://`` prefix) or ``{"service", "handler", "key"?}``."""
    if isinstance(raw, dict):
        service, handler, key = raw.get("service"), raw.get("handler"), raw.get("key")
        if (
            not isinstance(service, str)
            or not isinstance(handler, str)
            or not (key is None or isinstance(key, str))
        ):
            raise BadRequestError("target needs string 'service' and 'handler' (and 'key')")
        return Target(service, handler, key)
    if not isinstance(raw, str):
        raise BadRequestError("target must be 'Service/handler', 'Object/key/handler' or an object")
    parts = raw.removeprefix("service://").split("/")
    if len(parts) == 2 and all(parts):
        return Target(parts[0], parts[1])
    if len(parts) == 3 and parts[0] and parts[2]:
        return Target(parts[0], parts[2], parts[1])
    raise BadRequestError(f"invalid target {raw!r}: 'Service/handler' or 'Object/key/handler'")


def request_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``POST /schedules`` body into :meth:`Schedules.build` arguments."""
    unknown = set(body) - {
        "id",
        "cron",
        "timezone",
        "target",
        "body",
        "missed_ticks",
        "max_catch_up",
        "paused",
    }
    if unknown:
        raise BadRequestError(f"unknown fields: {', '.join(sorted(unknown))}")
    schedule_id, cron = body.get("id"), body.get("cron")
    if not isinstance(schedule_id, str) or not isinstance(cron, str):
        raise BadRequestError("a schedule needs string fields 'id' and 'cron'")
    timezone = body.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise BadRequestError("timezone must be an IANA time zone name")
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise BadRequestError("paused must be a boolean")
    missed = body.get("missed_ticks", "catch-up")
    max_catch_up = body.get("max_catch_up", 100)
    if isinstance(max_catch_up, bool):
        raise BadRequestError("max_catch_up must be an integer from 1 to 10000")
    payload = b"" if body.get("body") is None else json.dumps(body["body"]).encode()
    return {
        "schedule_id": schedule_id,
        "cron": cron,
        "target": parse_target(body.get("target")),
        "timezone": timezone,
        "body": payload,
        "missed_ticks": missed,
        "max_catch_up": max_catch_up,
        "paused": paused,
    }
