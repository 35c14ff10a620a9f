"""Durable cron schedules: one invocation per tick, however many engines and sweepers run.

A schedule is a record in the store (``sched/{id}`` / ``meta``, see
:class:`~invoker.records.ScheduleRecord`) that is *due* at its next tick, so the sweepers that
already fire timers fire it too: no process waits for it and no per-schedule timer exists
anywhere else (on AWS, no EventBridge rule per schedule; the sweeper Lambda's own schedule is
the only one).

Firing a tick is **one commit** (:meth:`Schedules.fire`): the schedule record's compare-and-set
from the version it was read at, advancing ``next_ms`` past the tick, together with the tick
invocation's creation outbox item (:data:`invoker.keys.CREATION_OUTBOX` in the partition of the
tick's invocation id). The invocation id is derived from the tick (idempotency key
``schedule/{id}/{tick_ms}``), so:

* two sweepers reading the same version: one commit applies, the other conflicts and re-reads;
* a crash after the commit: the outbox item falls due and the sweeper creates the invocation;
* the outbox applied twice, or the item re-written after a lost response: the creation is
  create-if-absent on a derived id, so it is one invocation.

Missed ticks (the store was unreachable, every sweeper was down, a manual clock jumped): with
``catch-up`` the missed ticks fire oldest first, each its own commit, at most ``max_catch_up``
of them (older ones are counted in ``skipped``); with ``skip`` only the latest fires.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from backends.api import Backend, ConflictError, Delete, Put
from invoker import keys
from invoker import records as rec
from invoker.api import BadRequestError, ConflictingRequestError, NotFoundError, Target
from invoker.commit import Committer, CommitUnknownError
from invoker.config import EngineConfig
from invoker.cron import CronError, CronSpec, iso
from invoker.ids import idempotent_invocation_id, workflow_invocation_id
from invoker.lookup import Lookup
from invoker.outbox import Outbox
from invoker.registry import Registry
from invoker.registry_model import ServiceInfo
from restate_lambda.clock import Clock
from restate_lambda.options import SCHEDULES_METADATA_KEY

log = logging.getLogger("restate_lambda.schedules")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
MISSED_TICKS = ("catch-up", "skip")
#: Header names the tick's invocation carries (``ctx.request().headers``).
SCHEDULE_HEADER = "x-restate-schedule-id"
TICK_HEADER = "x-restate-schedule-tick"
#: Handler metadata declaring schedules in code: a cron expression, or a JSON list of objects
#: ``{"cron", "timezone"?, "name"?, "key"?, "body"?, "missed_ticks"?, "max_catch_up"?}``.
METADATA_KEY = SCHEDULES_METADATA_KEY
#: Most ticks one :meth:`Schedules.fire` call commits (the rest stay due for the next sweep).
_TICKS_PER_FIRE = 500


def tick_idempotency_key(schedule_id: str, tick_ms: int) -> str:
    """The idempotency key of the invocation of one tick."""
    return f"schedule/{schedule_id}/{tick_ms}"


def check_id(schedule_id: str) -> None:
    """400 unless ``schedule_id`` is a valid schedule id."""
    if not isinstance(schedule_id, str) or not _ID.match(schedule_id):
        raise BadRequestError(
            f"invalid schedule id {schedule_id!r}: 1-200 of letters, digits and _.:@- "
            "starting with a letter or digit"
        )


class Schedules:
    """Creates, lists, pauses and fires cron schedules.

    Args:
        backend: the store.
        committer: the commit point.
        clock: injected time.
        config: recovery grace of outbox items.
        outbox: applies a fired tick's creation item right after its commit.
        registry: validates targets, tells workflows (one key per tick) apart.
        kick: called when a schedule may now be due sooner (wakes the sweeper loop).
    """

    def __init__(
        self,
        backend: Backend,
        committer: Committer,
        clock: Clock,
        config: EngineConfig,
        outbox: Outbox,
        registry: Registry,
        kick: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._committer = committer
        self._clock = clock
        self._config = config
        self._outbox = outbox
        self._registry = registry
        self._lookup = Lookup(registry)
        self._kick = kick

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, schedule_id: str) -> tuple[rec.ScheduleRecord, int] | None:
        """A schedule and its version, or None."""
        item = await self._backend.get(keys.schedule(schedule_id), keys.META)
        if item is None:
            return None
        return rec.decode(item.value, rec.ScheduleRecord), item.version

    async def require(self, schedule_id: str) -> tuple[rec.ScheduleRecord, int]:
        """A schedule and its version; 404 if there is none."""
        check_id(schedule_id)
        found = await self.get(schedule_id)
        if found is None:
            raise NotFoundError(f"schedule '{schedule_id}' not found")
        return found

    async def all(self) -> list[rec.ScheduleRecord]:
        """Every schedule, by id."""
        items = await self._backend.scan(keys.SCHEDULE_PREFIX, keys.META)
        out = [rec.decode(i.value, rec.ScheduleRecord) for i in items]
        return sorted(out, key=lambda s: s.id)

    # -- changes -------------------------------------------------------------------------------

    def build(
        self,
        schedule_id: str,
        cron: str,
        target: Target,
        *,
        timezone: str = "UTC",
        body: bytes = b"",
        content_type: str | None = None,
        missed_ticks: str = "catch-up",
        max_catch_up: int = 100,
        paused: bool = False,
        origin: str = "api",
    ) -> rec.ScheduleRecord:
        """Validate and build a new schedule (not stored); 400 on bad input."""
        check_id(schedule_id)
        try:
            spec = CronSpec(cron, timezone)
        except CronError as exc:
            raise BadRequestError(str(exc)) from exc
        if missed_ticks not in MISSED_TICKS:
            raise BadRequestError(f"missed_ticks must be one of {', '.join(MISSED_TICKS)}")
        if not isinstance(max_catch_up, int) or not 1 <= max_catch_up <= 10_000:
            raise BadRequestError("max_catch_up must be an integer from 1 to 10000")
        now = self._clock.now_ms()
        return rec.ScheduleRecord(
            id=schedule_id,
            cron=spec.expression,
            timezone=timezone,
            service=target.service,
            handler=target.handler,
            key=target.key,
            body=body,
            content_type=content_type or ("application/json" if body else None),
            missed_ticks=missed_ticks,
            max_catch_up=max_catch_up,
            paused=paused,
            next_ms=spec.next_after(now),
            origin=origin,
            created_ms=now,
            modified_ms=now,
        )

    def check_target(self, target: Target) -> None:
        """400/404 unless ``target`` names a registered handler a schedule can call (a
        workflow may leave its key out: each tick then runs the workflow with its own id)."""
        svc = self._lookup_service(target.service)
        probe = target
        if svc == "workflow" and target.key is None:
            probe = Target(target.service, target.handler, "tick")
        self._lookup.find(probe, from_ingress=False)

    def _lookup_service(self, service: str) -> str | None:
        info = self._registry.service(service)
        return info.kind if info is not None else None

    async def create(self, schedule: rec.ScheduleRecord) -> tuple[rec.ScheduleRecord, bool]:
        """Store a new schedule. Idempotent: the same definition again answers the stored one
        (``created`` False); a different one under the same id is a 409."""
        put = Put(
            keys.schedule(schedule.id),
            keys.META,
            rec.encode(schedule),
            expect=0,
            due_ms=None if schedule.paused else schedule.next_ms,
        )
        try:
            await self._committer.write([put])
        except ConflictError:
            existing = await self.get(schedule.id)
            if existing is not None and _same_definition(existing[0], schedule):
                return existing[0], False
            raise ConflictingRequestError(
                f"a different schedule '{schedule.id}' exists; delete it first"
            ) from None
        self._wake()
        return schedule, True

    async def replace(self, schedule: rec.ScheduleRecord) -> rec.ScheduleRecord:
        """Create or update a schedule (declared in code): an unchanged cron expression and
        zone keep its next tick and counters."""
        for _ in range(20):
            found = await self.get(schedule.id)
            if found is None:
                try:
                    stored, _created = await self.create(schedule)
                    return stored
                except ConflictingRequestError:
                    continue
            old, version = found
            if _same_definition(old, schedule) and old.origin == schedule.origin:
                return old
            new = schedule
            if old.cron == schedule.cron and old.timezone == schedule.timezone:
                new = _copy(
                    schedule,
                    next_ms=old.next_ms,
                    last_tick_ms=old.last_tick_ms,
                    last_invocation_id=old.last_invocation_id,
                    fired=old.fired,
                    skipped=old.skipped,
                    paused=old.paused,
                    created_ms=old.created_ms,
                )
            try:
                await self._write(new, version)
            except ConflictError:
                continue
            self._wake()
            return new
        raise ConflictingRequestError(f"schedule '{schedule.id}' is changing too fast; retry")

    async def delete(self, schedule_id: str) -> None:
        """Delete a schedule; ticks already fired keep their invocations. 404 if none."""
        for _ in range(20):
            _s, version = await self.require(schedule_id)
            try:
                await self._committer.write(
                    [Delete(keys.schedule(schedule_id), keys.META, expect=version)]
                )
                return
            except ConflictError:
                continue
        raise ConflictingRequestError(f"schedule '{schedule_id}' is changing too fast; retry")

    async def set_paused(self, schedule_id: str, paused: bool) -> rec.ScheduleRecord:
        """Pause (no ticks fire, none are owed) or resume (from the next tick after now)."""
        for _ in range(20):
            s, version = await self.require(schedule_id)
            if s.paused == paused:
                return s
            now = self._clock.now_ms()
            s.paused = paused
            s.modified_ms = now
            if not paused:
                s.next_ms = CronSpec(s.cron, s.timezone).next_after(now)
            try:
                await self._write(s, version)
            except ConflictError:
                continue
            if not paused:
                self._wake()
            return s
        raise ConflictingRequestError(f"schedule '{schedule_id}' is changing too fast; retry")

    async def _write(self, s: rec.ScheduleRecord, version: int) -> None:
        due = None if s.paused else s.next_ms
        await self._committer.write(
            [Put(keys.schedule(s.id), keys.META, rec.encode(s), expect=version, due_ms=due)]
        )

    def _wake(self) -> None:
        if self._kick is not None:
            self._kick()

    async def sync_declared(self, services: list[ServiceInfo]) -> list[str]:
        """Bring the schedules declared in ``services``' handler metadata in step: create or
        update each, delete the code-declared schedules of these services that are gone.
        Returns the ids of the declared schedules. A malformed declaration is logged and
        skipped (registration does not fail for it)."""
        wanted: dict[str, rec.ScheduleRecord] = {}
        for svc in services:
            for handler in svc.handlers.values():
                raw = handler.metadata.get(METADATA_KEY)
                if not raw:
                    continue
                try:
                    for s in self._declared(svc, handler.name, raw):
                        wanted[s.id] = s
                except (BadRequestError, ValueError) as exc:
                    log.error(
                        "ignoring the schedules declared on %s/%s: %s", svc.name, handler.name, exc
                    )
        names = {svc.name for svc in services}
        for old in await self.all():
            if old.origin == "code" and old.service in names and old.id not in wanted:
                try:
                    await self.delete(old.id)
                except NotFoundError:
                    pass
        for s in wanted.values():
            await self.replace(s)
        return sorted(wanted)

    def _declared(self, svc: ServiceInfo, handler: str, raw: str) -> list[rec.ScheduleRecord]:
        text = raw.strip()
        entries: Any = json.loads(text) if text[:1] in "[{" else [{"cron": text}]
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            raise BadRequestError(f"{METADATA_KEY} must be a cron expression or a JSON list")
        out = []
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise BadRequestError("each declared schedule is a JSON object")
            name = entry.get("name") or (str(n) if n else None)
            schedule_id = f"{svc.name}.{handler}" + (f".{name}" if name else "")
            body = entry.get("body")
            out.append(
                self.build(
                    schedule_id,
                    str(entry.get("cron", "")),
                    Target(svc.name, handler, entry.get("key")),
                    timezone=str(entry.get("timezone", "UTC")),
                    body=b"" if body is None else json.dumps(body).encode(),
                    missed_ticks=str(entry.get("missed_ticks", "catch-up")),
                    max_catch_up=entry.get("max_catch_up", 100),
                    origin="code",
                )
            )
        return out

    # -- firing --------------------------------------------------------------------------------

    async def fire(self, schedule_id: str) -> int:
        """Fire every tick of ``schedule_id`` that is due (the sweeper's job); returns how many
        this call fired. Safe to run anywhere, any number of times at once."""
        fired = 0
        while fired < _TICKS_PER_FIRE:
            found = await self.get(schedule_id)
            if found is None:
                return fired
            s, version = found
            now = self._clock.now_ms()
            if s.paused or s.next_ms is None or s.next_ms > now:
                return fired
            if self._registry.service(s.service) is None:
                await self._registry.refresh_if_stale(0)  # registered through another engine?
            spec = CronSpec(s.cron, s.timezone)
            keep = 1 if s.missed_ticks == "skip" else s.max_catch_up
            ticks, dropped = spec.due(s.next_ms, now, keep)
            tick = ticks[0]
            inv_id, item = self._tick_item(s, tick)
            s.skipped += dropped
            s.fired += 1
            s.last_tick_ms = tick
            s.last_invocation_id = inv_id
            s.next_ms = spec.next_after(tick)
            s.modified_ms = now
            fence = Put(
                keys.schedule(s.id), keys.META, rec.encode(s), expect=version, due_ms=s.next_ms
            )
            try:
                await self._committer.write([fence, item])
            except ConflictError:
                continue  # another sweeper fired it (or it was changed): read again
            except CommitUnknownError:
                log.warning("firing schedule %s: the commit's outcome is unknown", s.id)
                return fired  # still due if it did not apply: the next sweep retries
            if dropped:
                log.warning("schedule %s skipped %d missed ticks", s.id, dropped)
            fired += 1
            self._outbox.apply_soon(self._outbox.committed(item))
        return fired

    def _tick_item(self, s: rec.ScheduleRecord, tick: int) -> tuple[str, Put]:
        """The tick's invocation id and the outbox item that creates it."""
        idem = tick_idempotency_key(s.id, tick)
        key = s.key
        kind = self._lookup_service(s.service)
        if kind == "workflow":
            key = key if key is not None else f"{s.id}@{tick}"
            inv_id = workflow_invocation_id(s.service, key)
            idem_key: str | None = None
        else:
            inv_id = idempotent_invocation_id(s.service, s.handler, key, idem)
            idem_key = idem
        headers = [(SCHEDULE_HEADER, s.id), (TICK_HEADER, iso(tick) or "")]
        if s.body and s.content_type:
            headers.append(("content-type", s.content_type))
        spec = rec.ChildSpec(
            invocation_id=inv_id,
            service=s.service,
            handler=s.handler,
            key=key,
            parameter=s.body,
            headers=headers,
            idempotency_key=idem_key,
            invoke_time_ms=None,
            caller=None,
            parent_id="",
        )
        record = rec.OutboxRecord(effects=[rec.Effect("create", rec.encode(spec))])
        due = self._clock.now_ms() + self._config.recovery_grace_ms
        item = Put(keys.inv(inv_id), keys.CREATION_OUTBOX, rec.encode(record), None, due)
        return inv_id, item


def _same_definition(a: rec.ScheduleRecord, b: rec.ScheduleRecord) -> bool:
    fields = (
        "cron",
        "timezone",
        "service",
        "handler",
        "key",
        "body",
        "content_type",
        "missed_ticks",
        "max_catch_up",
    )
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def _copy(s: rec.ScheduleRecord, **changes: Any) -> rec.ScheduleRecord:
    data = {f: getattr(s, f) for f in s.__struct_fields__}
    data.update(changes)
    return rec.ScheduleRecord(**data)
