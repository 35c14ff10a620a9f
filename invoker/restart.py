"""Restart-as-new: a new invocation from a completed one's input (Restate 1.6+).

``PATCH /invocations/{id}/restart-as-new?from=N&deployment=keep|latest|dp_…`` creates an
invocation with a new id, the same target, input and headers. With ``from=N`` it also keeps the
journal prefix up to command N (included), with the notifications completing those commands,
so the new run replays that prefix instead of repeating it ("restart from prefix"). The answers
follow restate-server 1.7.12: 200 ``{"new_invocation_id"}``, 409 while the original runs, 400
for a prefix with commands that never completed or a malformed deployment, 410 once the journal
(and so the input) is gone.
"""

from __future__ import annotations

import random
import re

from backends.api import ConflictError, Put, WriteOp
from invoker import journal, keys
from invoker import records as rec
from invoker.api import BadRequestError, ConflictingRequestError, GoneError, NotFoundError
from invoker.commit import Committer
from invoker.ids import new_invocation_id, parse_invocation_id
from invoker.locks import ObjectLocks
from invoker.policies import Leases
from invoker.ports import Claimed, Dispatch
from invoker.processing import Entry, notification_ids
from invoker.registry import Registry
from invoker.store import Store
from restate_lambda.clock import Clock
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import is_command, parse

_DEPLOYMENT_ID = re.compile(r"^dp_[A-Za-z0-9]+$")
_COMPLETION_FIELDS = ("result_completion_id", "invocation_id_notification_idx")


def journal_prefix(entries: list[Entry], upto: int, inv_id: str) -> list[Entry]:
    """Commands ``0..upto`` (command indexes, the input is 0) with the notifications that
    complete them, in journal order; 400 (Restate's message) if one of them never completed or
    the prefix reaches past the last command before the output."""
    problem = BadRequestError(
        f"The prefix of the journal '{inv_id}' up to 'from' (included) contains some "
        "Commands without respective Completions."
    )
    if upto < 0:
        raise problem
    wanted: set[int] = set()
    found: set[int] = set()
    prefix: list[Entry] = []
    commands = 0
    for entry in entries:
        ty, payload = entry
        if is_command(ty):
            if commands > upto or ty == T.OUTPUT_COMMAND:
                continue
            commands += 1
            prefix.append(entry)
            msg = parse(ty, payload)
            fields = msg.DESCRIPTOR.fields_by_name
            for name in _COMPLETION_FIELDS:
                if name in fields and int(getattr(msg, name)):
                    wanted.add(int(getattr(msg, name)))
        elif 0x8000 <= ty < 0xFC00:
            cid, _sid, _name = notification_ids(entry)
            if cid is not None and cid in wanted:
                found.add(cid)
                prefix.append(entry)
    if commands <= upto or wanted - found:
        raise problem
    return prefix


class Restarts:
    """Creates the new invocation of a restart-as-new."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        registry: Registry,
        leases: Leases,
        locks: ObjectLocks,
        dispatch: Dispatch,
    ) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._registry = registry
        self._leases = leases
        self._locks = locks
        self._dispatch = dispatch
        self._rng = random.Random()

    async def restart_as_new(
        self, invocation_id: str, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """Create the new invocation; return its id (see the module docstring)."""
        try:
            parse_invocation_id(invocation_id)
        except ValueError as exc:
            raise BadRequestError(
                "The request field 'invocation_id' is invalid. Reason: bad format"
            ) from exc
        mode = (deployment or "keep").lower()
        if mode not in ("keep", "latest") and not _DEPLOYMENT_ID.match(deployment or ""):
            raise BadRequestError("The query parameter 'deployment' is invalid. Reason: bad format")
        loaded, _items = await self._store.partition(invocation_id)
        if loaded is None:
            raise NotFoundError(f"The requested invocation '{invocation_id}' does not exist")
        old = loaded.invocation
        if old.status != rec.Status.COMPLETED:
            raise ConflictingRequestError(f"The invocation '{invocation_id}' is still running.")
        if not loaded.entries or loaded.entries[0][0] != T.INPUT_COMMAND:
            raise GoneError(
                f"The invocation '{invocation_id}' cannot be restarted because the input is not "
                "available. This indicates that the journal was already purged, or not retained "
                "at all."
            )
        if old.handler_kind == "workflow":
            raise BadRequestError("restart-as-new is not supported for a workflow's run handler")
        entries = journal_prefix(loaded.entries, from_index or 0, invocation_id)
        pin, protocol = old.deployment_id, old.protocol_version
        if mode == "latest":
            pin, protocol = None, None
        elif mode != "keep":
            if self._registry.deployment(deployment or "") is None:
                raise NotFoundError(f"deployment '{deployment}' not found")
            pin, protocol = deployment, None
        if len(entries) > 1 and pin is None:
            pin, protocol = old.deployment_id, old.protocol_version  # a journal replays there
        return await self._create(old, entries, pin, protocol)

    async def _create(
        self, old: rec.Invocation, entries: list[Entry], pin: str | None, protocol: int | None
    ) -> str:
        now = self._clock.now_ms()
        new_id = new_invocation_id()
        inv = rec.Invocation(
            id=new_id,
            service=old.service,
            handler=old.handler,
            key=old.key,
            service_kind=old.service_kind,
            handler_kind=old.handler_kind,
            created_ms=now,
            modified_ms=now,
            invoked_by="restart_as_new",
            deployment_id=pin,
            protocol_version=protocol,
            commands_len=sum(1 for ty, _ in entries if is_command(ty)),
            last_stored_ms=now,
            random_seed=self._rng.getrandbits(63),
        )
        pk = keys.inv(new_id)
        ops: list[WriteOp] = journal.append(inv, entries)
        if old.service_kind == "virtual_object" and old.handler_kind == "exclusive":
            await self._locks.enqueue(inv, ops, entries)
            return new_id
        inv.status, due, claimed = self._leases.initial(inv, now, run_here=False)
        try:
            await self._committer.write(
                [Put(pk, keys.META, rec.encode(inv), expect=0, due_ms=due), *ops]
            )
        except ConflictError as exc:  # a fresh random id: practically impossible
            raise ConflictingRequestError("invocation id collision; retry") from exc
        self._dispatch.dispatch(new_id, Claimed(inv, 1, entries) if claimed else None)
        return new_id
