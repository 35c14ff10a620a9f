"""One invocation's journal as a timeline people can read (the web UI and the CLI's describe).

Input: ``sys_journal`` rows as ``POST /query`` answers them in JSON (``raw`` hex, times RFC
3339, ``entry_json`` restate-server's serde JSON), or as the row builders make them (``raw``
bytes, times epoch ms): both work. Each entry gets its kind (``Run``, ``Sleep``, ``Call``…), its
name, a preview of its value (and, for a command, of the result its completion brought), its
wake-up time, and the failure of the last attempt when that attempt failed on it.

Nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Characters of a value shown before it is cut (``…`` marks the cut).
PREVIEW_CHARS = 120


def iso_time(value: Any) -> str | None:
    """A time as ISO 8601 in UTC with milliseconds (``2026-08-22T10:00:00.000Z``): epoch ms,
    or RFC 3339 text (as /query answers it) normalized; None for none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        text = str(value)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def preview(raw: bytes | None, limit: int = PREVIEW_CHARS) -> str | None:
    """A value for people: compact JSON when it is JSON, else text, else ``0x`` hex; cut at
    ``limit`` characters with ``…``. None for no value; ``(empty)`` for zero bytes."""
    if raw is None:
        return None
    if not raw:
        return "(empty)"
    text: str
    try:
        text = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = "0x" + raw.hex()
    return cut(text, limit)


def cut(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut at ``limit`` characters (``…`` marks the cut)."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _bytes(value: Any) -> bytes | None:
    """A serde byte array (list of ints) as bytes."""
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    return None


@dataclass(slots=True)
class Result:
    """A completion's result: a value preview, or a failure, or nothing (``Void``)."""

    value: str | None = None
    failure: str | None = None


def _result(body: Any) -> Result | None:
    """restate's serde JSON of a result (``"Void"``, ``{"Success": [...]}``, ``{"Failure"}``)."""
    if body == "Void":
        return Result()
    if not isinstance(body, Mapping):
        return None
    if "Success" in body:
        return Result(value=preview(_bytes(body["Success"])))
    failure = body.get("Failure")
    if isinstance(failure, Mapping):
        return Result(failure=f"[{failure.get('code')}] {failure.get('message')}")
    return None


@dataclass(slots=True)
class Attempts:
    """The last attempt's failure, shown on the entry it happened at."""

    message: str
    stacktrace: str | None = None
    retry_count: int = 0
    next_retry_at: str | None = None
    related: str | None = None


@dataclass(slots=True)
class Entry:
    """One journal entry of the timeline."""

    index: int
    #: ``command``, ``notification`` or ``other``
    category: str
    #: ``Run``, ``Sleep``, ``Call``, ``SetState``, ``Completion: Run``, ``Signal``…
    kind: str
    name: str = ""
    #: what it is about: a call's target, a state or promise key, a signal
    detail: str = ""
    #: the entry's own value (input, output, state value, call parameter, completion value)
    value: str | None = None
    #: a command's result, from the notification that completed it (a value or a failure)
    result: str | None = None
    result_failure: str | None = None
    #: the entry's own failure (an output's, a completed promise's, a notification's)
    failure: str | None = None
    completed: bool | None = None
    wakeup_at: str | None = None
    appended_at: str | None = None
    invoked_id: str | None = None
    #: journal index of the notification completing this command / of the command completed
    completed_by: int | None = None
    completes: int | None = None
    raw_length: int | None = None
    attempts: Attempts | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """``Run 'charge'``, ``Sleep``, …"""
        return f"{self.kind} {self.name!r}" if self.name else self.kind


def _raw_length(row: Mapping[str, Any]) -> int | None:
    length = row.get("raw_length")
    if isinstance(length, int):
        return length
    raw = row.get("raw")
    if isinstance(raw, bytes):
        return len(raw)
    if isinstance(raw, str):
        return len(raw) // 2
    return None


def _command(entry: Entry, variant: str, body: Mapping[str, Any]) -> None:
    if variant == "Input":
        entry.value = preview(_bytes(body.get("payload")))
    elif variant == "Output":
        found = _result(body.get("result"))
        if found is not None:
            entry.value, entry.failure = found.value, found.failure
    elif variant in ("SetState", "CompletePromise"):
        raw = body.get("value")
        found = _result(raw) if variant == "CompletePromise" else None
        if found is not None:
            entry.value, entry.failure = found.value, found.failure
        else:
            entry.value = preview(_bytes(raw))
    elif variant == "GetEagerState":
        found = _result(body.get("result"))
        if found is not None:
            entry.value = found.value if found.value is not None else "(none)"
    elif variant in ("Call", "OneWayCall"):
        request = body.get("request")
        if isinstance(request, Mapping):
            entry.value = preview(_bytes(request.get("parameter")))
    if isinstance(body.get("key"), str) and not entry.detail:
        entry.detail = body["key"]


def _completion_ids(body: Mapping[str, Any]) -> list[int]:
    """The completion ids a command waits for (a call: its invocation id, then its result)."""
    names = ("invocation_id_completion_id", "result_completion_id", "completion_id")
    return [int(body[n]) for n in names if isinstance(body.get(n), int)]


def _entry(row: Mapping[str, Any]) -> tuple[Entry, list[int], int | None]:
    """An entry, the completion id it waits for (commands) or brings (notifications)."""
    entry_type = str(row.get("entry_type") or "")
    category, _, kind = entry_type.partition(": ")
    category = category.lower() if kind else "other"
    entry = Entry(
        index=int(row.get("index") or 0),
        category=category if category in ("command", "notification") else "other",
        kind=kind or entry_type,
        name=str(row.get("name") or ""),
        completed=row.get("completed"),
        wakeup_at=iso_time(row.get("sleep_wakeup_at")),
        appended_at=iso_time(row.get("appended_at")),
        invoked_id=row.get("invoked_id"),
        raw_length=_raw_length(row),
    )
    entry.detail = str(row.get("invoked_target") or row.get("promise_name") or "")
    waits: list[int] = []
    brings: int | None = None
    try:
        parsed = json.loads(row["entry_json"]) if row.get("entry_json") else None
    except (ValueError, TypeError):
        parsed = None
    if not isinstance(parsed, Mapping):
        return entry, waits, brings
    if isinstance(parsed.get("Command"), Mapping):
        for variant, body in parsed["Command"].items():
            if isinstance(body, Mapping):
                _command(entry, variant, body)
                waits = _completion_ids(body)
    elif isinstance(parsed.get("Notification"), Mapping):
        note = parsed["Notification"]
        signal = note.get("Signal")
        completion = note.get("Completion")
        if isinstance(signal, Mapping):
            entry.kind = "Signal"
            ident = signal.get("id")
            if isinstance(ident, Mapping):
                entry.detail = ", ".join(f"{k.lower()} {v}" for k, v in ident.items())
                if ident.get("Index") == 1:
                    entry.detail = "cancel"
            found = _result(signal.get("result"))
            if found is not None:
                entry.value, entry.failure = found.value, found.failure
        elif isinstance(completion, Mapping):
            for variant, body in completion.items():
                if not isinstance(body, Mapping):
                    continue
                entry.kind = f"Completion: {variant}"
                if isinstance(body.get("invocation_id"), str):
                    entry.value = body["invocation_id"]
                found = _result(body.get("result"))
                if found is not None:
                    entry.value, entry.failure = found.value, found.failure
                if isinstance(body.get("completion_id"), int):
                    brings = int(body["completion_id"])
    return entry, waits, brings


def timeline(
    rows: Iterable[Mapping[str, Any]], failure: Attempts | None = None, related: int | None = None
) -> list[Entry]:
    """The entries of ``rows`` (``sys_journal`` rows of one invocation) in journal order.

    ``failure``: the last attempt's failure, attached to the ``related``-th command (a command
    index, as ``last_failure_related_command_index`` counts), or to a last pseudo entry
    (``kind`` ``Attempt``) when it is not in the journal or unknown.
    """
    entries: list[Entry] = []
    waiting: dict[int, Entry] = {}  # completion id -> the command waiting for it
    for row in sorted(rows, key=lambda r: int(r.get("index") or 0)):
        entry, waits, brings = _entry(row)
        if entry.category == "command":
            for cid in waits:
                waiting[cid] = entry
        command = None
        if entry.category == "notification" and brings is not None:
            command = waiting.pop(brings, None)
        if command is not None:
            entry.completes = command.index
            if entry.kind == "Completion: CallInvocationId":
                command.invoked_id = command.invoked_id or entry.value
            else:
                command.completed_by = entry.index
                command.completed = True
                command.result, command.result_failure = entry.value, entry.failure
                if entry.failure is None and command.result is None:
                    command.result = "(done)"
        entries.append(entry)
    if failure is not None:
        commands = [e for e in entries if e.category == "command"]
        if related is not None and 0 <= related < len(commands):
            commands[related].attempts = failure
        else:
            entries.append(
                Entry(
                    index=len(entries),
                    category="other",
                    kind="Attempt",
                    name=failure.related or "",
                    attempts=failure,
                )
            )
    return entries


def failure_of(
    invocation: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()
) -> tuple[Attempts | None, int | None]:
    """The last attempt's failure of a ``sys_invocation`` row (its message, stack trace,
    retries, next retry), with the stack trace of a ``sys_journal_events`` row when there is
    one; and the related command index. ``(None, None)`` when the last attempt did not fail."""
    text = invocation.get("last_failure")
    if not text:
        return None, None
    message, _, trace = str(text).partition("\n")
    for event in events:
        try:
            body = json.loads(event.get("event_json") or "")
        except (ValueError, TypeError):
            continue
        if isinstance(body, Mapping) and body.get("ty") == "TransientError":
            message = f"[{body.get('error_code')}] {body.get('error_message')}"
            trace = str(body.get("error_stacktrace") or trace)
    related_index = invocation.get("last_failure_related_command_index")
    attempts = Attempts(
        message=message,
        stacktrace=trace.strip("\n") or None,
        retry_count=int(invocation.get("retry_count") or 0),
        next_retry_at=iso_time(invocation.get("next_retry_at")),
        related=invocation.get("last_failure_related_command_name"),
    )
    return attempts, related_index if isinstance(related_index, int) else None
