"""``restate-lambda schedules | subscriptions``: cron schedules and event subscriptions from a
shell, over the admin API (``/schedules``, ``/subscriptions``).

Registered in :mod:`infra.cli` as ``schedules`` and ``subscriptions``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from infra.cli_output import EXIT_USAGE, admin_call, fail, note, print_json, say, table

schedules_app = typer.Typer(no_args_is_help=True, help="Cron schedules: create, list, pause.")
subscriptions_app = typer.Typer(
    no_args_is_help=True, help="Event subscriptions (SQS, Kinesis, DynamoDB Streams, Kafka)."
)

AdminUrl = Annotated[
    str,
    typer.Option(envvar="RESTATE_ADMIN_URL", help="Admin API of a running runtime."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_ADMIN = "http://127.0.0.1:9070"


def _id(value: str) -> str:
    return quote(value, safe="")


def _show(schedule: dict[str, Any]) -> None:
    target = schedule["target"]
    where = "/".join(x for x in (target["service"], target.get("key"), target["handler"]) if x)
    table(
        ["", ""],
        [
            ("id", schedule["id"]),
            ("cron", f"{schedule['cron']} ({schedule['timezone']})"),
            ("target", where),
            ("state", "paused" if schedule["paused"] else "active"),
            ("next tick", schedule.get("next_tick") or ""),
            ("last tick", schedule.get("last_tick") or ""),
            ("last invocation", schedule.get("last_invocation_id") or ""),
            ("fired / skipped", f"{schedule['fired']} / {schedule['skipped']}"),
            ("missed ticks", f"{schedule['missed_ticks']} (at most {schedule['max_catch_up']})"),
            ("origin", schedule["origin"]),
        ],
    )


@schedules_app.command("create")
def schedules_create(
    schedule_id: Annotated[str, typer.Argument(help="A name, e.g. nightly-report.")],
    cron: Annotated[str, typer.Argument(help='Cron expression, e.g. "0 3 * * *" or @hourly.')],
    target: Annotated[str, typer.Argument(help="Service/handler or Object/key/handler.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the expression.")] = "UTC",
    body: Annotated[str | None, typer.Option(help="JSON input of every tick.")] = None,
    skip_missed: Annotated[
        bool, typer.Option("--skip-missed", help="Fire only the latest of missed ticks.")
    ] = False,
    max_catch_up: Annotated[int, typer.Option(help="Most missed ticks fired late.")] = 100,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    admin_url: AdminUrl = DEFAULT_ADMIN,
    json_: Json = False,
) -> None:
    """Create a schedule (the same definition again is accepted; a different one is refused)."""
    request: dict[str, Any] = {
        "id": schedule_id,
        "cron": cron,
        "target": target,
        "timezone": timezone,
        "missed_ticks": "skip" if skip_missed else "catch-up",
        "max_catch_up": max_catch_up,
        "paused": paused,
    }
    if body is not None:
        try:
            request["body"] = json.loads(body)
        except ValueError as exc:
            fail(f"--body is not JSON: {exc}", EXIT_USAGE)
    schedule = admin_call("POST", admin_url, "/schedules", request)
    if json_:
        print_json(schedule)
    else:
        _show(schedule)


@schedules_app.command("list")
def schedules_list(admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False) -> None:
    """List every schedule."""
    rows = admin_call("GET", admin_url, "/schedules").get("schedules", [])
    if json_:
        print_json(rows)
        return
    if not rows:
        note("no schedules")
        return
    table(
        ["ID", "CRON", "TZ", "TARGET", "STATE", "NEXT TICK", "FIRED", "ORIGIN"],
        (
            (
                s["id"],
                s["cron"],
                s["timezone"],
                "/".join(
                    x
                    for x in (
                        s["target"]["service"],
                        s["target"].get("key"),
                        s["target"]["handler"],
                    )
                    if x
                ),
                "paused" if s["paused"] else "active",
                s.get("next_tick") or "",
                s["fired"],
                s["origin"],
            )
            for s in rows
        ),
    )


@schedules_app.command("describe")
def schedules_describe(
    schedule_id: str, admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False
) -> None:
    """Show one schedule."""
    schedule = admin_call(
        "GET", admin_url, f"/schedules/{_id(schedule_id)}", not_found=f"no schedule {schedule_id}"
    )
    if json_:
        print_json(schedule)
    else:
        _show(schedule)


@schedules_app.command("delete")
def schedules_delete(schedule_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Delete a schedule (invocations it fired stay)."""
    admin_call(
        "DELETE",
        admin_url,
        f"/schedules/{_id(schedule_id)}",
        not_found=f"no schedule {schedule_id}",
    )
    say(f"deleted: {schedule_id}")


def _change(op: str, schedule_id: str, admin_url: str) -> None:
    admin_call(
        "PATCH",
        admin_url,
        f"/schedules/{_id(schedule_id)}/{op}",
        not_found=f"no schedule {schedule_id}",
    )
    say(f"{op}d: {schedule_id}")


@schedules_app.command("pause")
def schedules_pause(schedule_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Stop firing (ticks while paused are not owed)."""
    _change("pause", schedule_id, admin_url)


@schedules_app.command("resume")
def schedules_resume(schedule_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Fire again, from the next tick after now."""
    _change("resume", schedule_id, admin_url)


# -- subscriptions -----------------------------------------------------------------------------


@subscriptions_app.command("create")
def subscriptions_create(
    source: Annotated[
        str, typer.Argument(help="sqs://QUEUE, kinesis://STREAM, dynamodb://TABLE, kafka://C/T")
    ],
    sink: Annotated[str, typer.Argument(help="service://Service/handler")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="KEY=VALUE (repeatable).")
    ] = None,
    admin_url: AdminUrl = DEFAULT_ADMIN,
    json_: Json = False,
) -> None:
    """Create a subscription."""
    options: dict[str, str] = {}
    for item in option or []:
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--option {item!r}: expected KEY=VALUE", EXIT_USAGE)
        options[name] = value
    sub = admin_call(
        "POST", admin_url, "/subscriptions", {"source": source, "sink": sink, "options": options}
    )
    if json_:
        print_json(sub)
    else:
        say(sub["id"])


@subscriptions_app.command("list")
def subscriptions_list(admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False) -> None:
    """List every subscription."""
    rows = admin_call("GET", admin_url, "/subscriptions").get("subscriptions", [])
    if json_:
        print_json(rows)
        return
    if not rows:
        note("no subscriptions")
        return
    table(["ID", "SOURCE", "SINK"], ((s["id"], s["source"], s["sink"]) for s in rows))


@subscriptions_app.command("delete")
def subscriptions_delete(subscription_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Delete a subscription."""
    admin_call(
        "DELETE",
        admin_url,
        f"/subscriptions/{_id(subscription_id)}",
        not_found=f"no subscription {subscription_id}",
    )
    say(f"deleted: {subscription_id}")
