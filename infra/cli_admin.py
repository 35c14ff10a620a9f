"""``restate-lambda deployments | services | invocations | kv``: the admin API from a shell.

Every listing prints a table, or JSON with ``--json``; errors are one line with the exit codes
of :mod:`infra.cli_output`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import typer

from infra.cli_output import (
    EXIT_NOT_FOUND,
    admin_call,
    admin_query,
    fail,
    json_value,
    note,
    print_json,
    progress,
    say,
    show_value,
    sql_string,
    table,
    when,
)

deployments_app = typer.Typer(no_args_is_help=True, help="Register, list and remove deployments.")
services_app = typer.Typer(no_args_is_help=True, help="List the registered services.")
invocations_app = typer.Typer(no_args_is_help=True, help="Inspect and manage invocations.")
kv_app = typer.Typer(no_args_is_help=True, help="Read the K/V state of objects and workflows.")

AdminUrl = Annotated[
    str,
    typer.Option(envvar="RESTATE_ADMIN_URL", help="Admin API of a running runtime."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_ADMIN = "http://127.0.0.1:9070"


def _id(value: str) -> str:
    return quote(value, safe="")


# -- deployments ---------------------------------------------------------------------------------


@deployments_app.command("register")
def deployments_register(
    uri: Annotated[str, typer.Argument(help="Deployment URL or Lambda ARN.")],
    admin_url: AdminUrl = DEFAULT_ADMIN,
    force: Annotated[bool, typer.Option(help="Overwrite an existing deployment.")] = False,
    use_http11: Annotated[
        bool,
        typer.Option(
            "--use-http1.1",
            help="Reach the deployment over HTTP/1.1 (request-response) instead of HTTP/2 "
            "cleartext (the default, as restate's CLI: the SDK then streams bidirectionally).",
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Register a deployment: discover its services and make them callable."""
    key = "arn" if uri.startswith("arn:") else "uri"
    with progress(f"discovering the services at {uri}"):
        result = admin_call(
            "POST",
            admin_url,
            "/deployments",
            {key: uri, "force": force, "use_http_11": use_http11},
            timeout=120,
        )
    if json_:
        print_json(result)
        return
    services = result.get("services", [])
    say(f"registered {result.get('id')} at {uri}: {len(services)} service(s)")
    table(
        ["SERVICE", "TYPE", "HANDLERS"],
        (
            (s["name"], s.get("ty", ""), ", ".join(h["name"] for h in s.get("handlers", [])))
            for s in services
        ),
    )


@deployments_app.command("list")
def deployments_list(admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False) -> None:
    """List deployments."""
    deployments = admin_call("GET", admin_url, "/deployments").get("deployments", [])
    if json_:
        print_json(deployments)
        return
    if not deployments:
        note("no deployments registered (restate-lambda deployments register URL)")
        return
    table(
        ["ID", "ENDPOINT", "SERVICES", "CREATED"],
        (
            (
                d["id"],
                d.get("uri") or d.get("arn") or "",
                ", ".join(s["name"] for s in d.get("services", [])),
                when(d.get("created_at")),
            )
            for d in deployments
        ),
    )


@deployments_app.command("remove")
def deployments_remove(
    deployment_id: Annotated[str, typer.Argument(help="Deployment id (dp_...).")],
    admin_url: AdminUrl = DEFAULT_ADMIN,
) -> None:
    """Remove a deployment (and the services it still serves), e.g. a stale in-process one."""
    admin_call(
        "DELETE",
        admin_url,
        f"/deployments/{_id(deployment_id)}?force=true",
        not_found=f"no deployment {deployment_id} (restate-lambda deployments list shows them)",
    )
    say(f"removed {deployment_id}")


# -- services ------------------------------------------------------------------------------------


@services_app.command("list")
def services_list(admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False) -> None:
    """List services with their handlers."""
    services = admin_call("GET", admin_url, "/services").get("services", [])
    if json_:
        print_json(services)
        return
    if not services:
        note("no services registered (restate-lambda deployments register URL)")
        return
    table(
        ["SERVICE", "TYPE", "HANDLERS", "DEPLOYMENT", "PUBLIC"],
        (
            (
                s["name"],
                s.get("ty", ""),
                ", ".join(h["name"] for h in s.get("handlers", [])),
                s.get("deployment_id", ""),
                "yes" if s.get("public", True) else "no",
            )
            for s in services
        ),
    )


# -- invocations ---------------------------------------------------------------------------------


@invocations_app.command("list")
def invocations_list(
    admin_url: AdminUrl = DEFAULT_ADMIN,
    all_: Annotated[bool, typer.Option("--all", help="Include completed ones.")] = False,
    json_: Json = False,
) -> None:
    """List invocations, newest first."""
    rows = admin_call("GET", admin_url, f"/invocations?all={str(all_).lower()}").get(
        "invocations", []
    )
    if json_:
        print_json(rows)
        return
    if not rows:
        note("no invocations" + ("" if all_ else " in flight (--all shows completed ones)"))
        return
    table(
        ["ID", "TARGET", "STATUS", "CREATED", "RETRIES", "LAST FAILURE"],
        (
            (
                r["id"],
                r["target"],
                r["status"],
                when(r.get("created_at")),
                r.get("retry_count") or "",
                r.get("last_failure") or "",
            )
            for r in rows
        ),
    )


def _get_invocation(admin_url: str, invocation_id: str) -> Any:
    return admin_call(
        "GET",
        admin_url,
        f"/invocations/{_id(invocation_id)}",
        not_found=f"no invocation {invocation_id}",
    )


@invocations_app.command("describe")
def invocations_describe(
    invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN, json_: Json = False
) -> None:
    """Show one invocation: its facts, its journal (entry names, values, results, wake-up
    times) and the stack trace of its last failed attempt."""
    from ingress.ui.timeline import failure_of, iso_time, timeline

    row = _get_invocation(admin_url, invocation_id)
    literal = sql_string(row["id"])
    found = admin_query(admin_url, f"select * from sys_invocation where id = {literal}")
    journal = admin_query(
        admin_url,
        "select index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, "
        f"promise_name, raw_length, entry_json, appended_at from sys_journal where id = {literal} "
        "order by index",
    )
    events = admin_query(
        admin_url, f"select event_json from sys_journal_events where id = {literal}"
    )
    inv = found[0] if found else row
    failure, related = failure_of(inv, events or [])
    entries = timeline(journal, failure, related) if journal is not None else None
    if json_:
        out = dict(row)
        if entries is not None:
            out["timeline"] = [dataclasses.asdict(e) for e in entries]
        print_json(out)
        return
    facts: list[tuple[str, Any]] = [
        ("id", row["id"]),
        ("target", row["target"]),
        ("status", row["status"]),
        ("created", iso_time(inv.get("created_at"))),
        ("modified", iso_time(inv.get("modified_at"))),
    ]
    for label, column in (("completed", "completed_at"), ("scheduled for", "scheduled_start_at")):
        if inv.get(column):
            facts.append((label, iso_time(inv[column])))
    facts += [
        ("deployment", inv.get("pinned_deployment_id") or ""),
        ("retries", inv.get("retry_count") or 0),
    ]
    if inv.get("next_retry_at"):
        facts.append(("next retry", iso_time(inv["next_retry_at"])))
    if failure is not None:
        where = f" at {failure.related}" if failure.related else ""
        facts.append(("last failure", f"{failure.message}{where}"))
    elif row.get("last_failure"):
        facts.append(("last failure", str(row["last_failure"]).split("\n")[0]))
    if row.get("completion_result"):
        facts.append(("result", row.get("completion_failure") or row["completion_result"]))
    table(["", ""], facts)
    if entries is None:  # no SQL on this admin API: the journal's entry types and sizes
        if row.get("journal"):
            say("")
            table(
                ["#", "ENTRY", "BYTES"],
                ((e["index"], e["entry_type"], e["size"]) for e in row["journal"]),
            )
        return
    if entries:
        say("")
        table(["#", "ENTRY", "ABOUT", "VALUE", "RESULT", "TIME"], _journal_lines(entries))
    if failure is not None and failure.stacktrace:
        say("")
        say("stack trace of the last failed attempt:")
        say(failure.stacktrace)


def _journal_lines(entries: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Rows of the journal table: values cut at 80 characters, times ISO 8601 UTC."""
    from ingress.ui.timeline import cut

    for e in entries:
        about = " ".join(x for x in (e.detail, e.invoked_id or "") if x)
        value = e.value if e.failure is None else f"{e.value or ''} {e.failure}".strip()
        result = e.result if e.result_failure is None else e.result_failure
        if e.attempts is not None:
            result = f"failing: {e.attempts.message} ({e.attempts.retry_count}x)"
        elif e.category == "command" and e.completed is False:
            result = "(waiting)"
        when = f"wakes {e.wakeup_at}" if e.wakeup_at else (e.appended_at or "")
        index = "" if e.kind == "Attempt" else e.index
        yield (index, e.title, about, cut(value or "", 80), cut(result or "", 80), when)


def _manage(action: str, invocation_id: str, admin_url: str) -> None:
    admin_call(
        "PATCH",
        admin_url,
        f"/invocations/{_id(invocation_id)}/{action}",
        not_found=f"no invocation {invocation_id}",
    )
    say(f"{action}: {invocation_id}")


@invocations_app.command("cancel")
def invocations_cancel(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Cancel an invocation (cooperatively, reaching its child calls)."""
    _manage("cancel", invocation_id, admin_url)


@invocations_app.command("kill")
def invocations_kill(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Kill an invocation immediately."""
    _manage("kill", invocation_id, admin_url)


@invocations_app.command("pause")
def invocations_pause(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Stop retrying an invocation until it is resumed."""
    _manage("pause", invocation_id, admin_url)


@invocations_app.command("resume")
def invocations_resume(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Retry a paused invocation now (e.g. after fixing its handler)."""
    _manage("resume", invocation_id, admin_url)


@invocations_app.command("purge")
def invocations_purge(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Delete a completed invocation's records."""
    _manage("purge", invocation_id, admin_url)


@invocations_app.command("purge-journal")
def invocations_purge_journal(invocation_id: str, admin_url: AdminUrl = DEFAULT_ADMIN) -> None:
    """Delete a completed invocation's journal, keeping its result."""
    _manage("purge-journal", invocation_id, admin_url)


@invocations_app.command("restart-as-new")
def invocations_restart_as_new(
    invocation_id: str,
    from_: Annotated[
        int | None,
        typer.Option("--from", help="Keep the journal up to this command (0 = the input)."),
    ] = None,
    deployment: Annotated[
        str | None, typer.Option(help="keep (default), latest, or a deployment id.")
    ] = None,
    admin_url: AdminUrl = DEFAULT_ADMIN,
) -> None:
    """Start a new invocation with a completed one's input (and journal prefix)."""
    query = "&".join(
        f"{k}={_id(str(v))}"
        for k, v in (("from", from_), ("deployment", deployment))
        if v is not None
    )
    answer = admin_call(
        "PATCH",
        admin_url,
        f"/invocations/{_id(invocation_id)}/restart-as-new" + (f"?{query}" if query else ""),
        not_found=f"no invocation {invocation_id}",
    )
    say(answer["new_invocation_id"])


# -- kv ------------------------------------------------------------------------------------------


@kv_app.command("get")
def kv_get(
    service: str,
    key: str,
    admin_url: AdminUrl = DEFAULT_ADMIN,
    json_: Json = False,
) -> None:
    """Print the state of one object or workflow instance (exit 3 if it has none)."""
    query = (
        "select key, value from state where service_name = "
        f"{sql_string(service)} and service_key = {sql_string(key)};"
    )
    rows = admin_call("POST", admin_url, "/query", {"query": query}).get("rows", [])
    raw = [(row["key"], bytes.fromhex(row["value"])) for row in rows]
    if json_:
        print_json({name: json_value(value) for name, value in raw})
    if not raw:
        fail(f"no state for {service}/{key}", EXIT_NOT_FOUND)
    if not json_:
        table(["KEY", "VALUE"], ((name, show_value(value)) for name, value in raw))
