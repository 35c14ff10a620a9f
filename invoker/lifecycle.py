"""Managing invocations from outside: awakeables, cancel, kill, pause, resume, purge."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import msgspec

from backends.api import ConflictError, Delete, Item, Put
from invoker import keys
from invoker import records as rec
from invoker.api import BadRequestError, ConflictingRequestError, NotFoundError
from invoker.effects import deliver_signal, release_lock
from invoker.ids import awakeable_target, parse_invocation_id
from invoker.journal import call_children, load_partition

if TYPE_CHECKING:
    from invoker.engine import Engine
    from invoker.engine_core import EngineCore

log = logging.getLogger("restate_lambda.lifecycle")
_inv_decoder = msgspec.msgpack.Decoder(rec.Invocation)

CANCELLED = rec.Failure(409, "cancelled")
KILLED = rec.Failure(409, "killed")
_NOT_STARTED = (rec.Status.INBOXED, rec.Status.SCHEDULED)


async def complete_awakeable(engine: Engine, awakeable_id: str, result: rec.Result) -> None:
    """Resolve or reject an awakeable from outside."""
    try:
        target, idx = awakeable_target(awakeable_id)
    except ValueError as exc:
        raise BadRequestError(f"invalid awakeable id {awakeable_id!r}: {exc}") from exc
    # Like Restate, accept it even when the invocation is unknown or already completed.
    await deliver_signal(engine, target, idx, None, result)


async def _get(engine: Engine, invocation_id: str) -> tuple[rec.Invocation, Item]:
    try:
        parse_invocation_id(invocation_id)
    except ValueError as exc:
        raise BadRequestError(
            "The request field 'invocation_id' is invalid. Reason: bad format"
        ) from exc
    item = await engine.backend.get(keys.inv(invocation_id), keys.META)
    if item is None:
        raise NotFoundError(f"The requested invocation '{invocation_id}' does not exist")
    return _inv_decoder.decode(item.value), item


async def manage(
    engine: Engine,
    invocation_id: str,
    action: Literal["cancel", "kill", "purge", "pause", "resume"],
) -> None:
    """Apply one admin lifecycle operation."""
    for _ in range(50):
        inv, item = await _get(engine, invocation_id)
        try:
            if action == "cancel":
                await _cancel(engine, inv, item)
            elif action == "kill":
                await _terminate(engine, inv, item, KILLED, recursive=True)
            elif action == "purge":
                await _purge(engine, inv)
            elif action == "pause":
                await _pause(engine, inv, item)
            elif action == "resume":
                await _resume(engine, inv, item)
            else:
                raise BadRequestError(f"unknown action {action}")
            return
        except ConflictError:
            continue
    raise ConflictingRequestError(f"invocation {invocation_id} is changing too fast; retry")


def _already_completed(inv: rec.Invocation) -> ConflictingRequestError:
    return ConflictingRequestError(f"The invocation '{inv.id}' was already completed.")


async def _cancel(engine: Engine, inv: rec.Invocation, item: Item) -> None:
    if inv.status == rec.Status.COMPLETED:
        raise _already_completed(inv)
    if inv.status in _NOT_STARTED:
        await _terminate(engine, inv, item, CANCELLED, recursive=False)
        return
    await deliver_signal(engine, inv.id, 1, None, None)


async def _terminate(
    engine: Engine, inv: rec.Invocation, item: Item, failure: rec.Failure, *, recursive: bool
) -> None:
    """Complete an invocation with ``failure`` without running it any further."""
    if inv.status == rec.Status.COMPLETED:
        raise _already_completed(inv)
    was_holding = (
        inv.key is not None
        and inv.handler_kind == "exclusive"
        and inv.status
        not in (
            rec.Status.INBOXED,
            rec.Status.SCHEDULED,
        )
    )
    now = engine.clock.now_ms()
    engine._mark_completed(inv, rec.Result(failure=failure), now)
    await engine.backend.write(
        [Put(item.pk, keys.META, rec.encode(inv), expect=item.version, due_ms=inv.expires_ms)]
    )
    if was_holding and inv.key is not None:
        await release_lock(engine, inv.service, inv.key, inv.id)
    await engine._on_completed(inv)
    if recursive:
        items = await engine.backend.query(item.pk, keys.JOURNAL_PREFIX)
        loaded = load_partition([item, *items])
        if loaded is not None:
            for child in call_children(loaded.entries):
                try:
                    await manage(engine, child, "kill")
                except (NotFoundError, ConflictingRequestError):
                    continue


async def _pause(engine: Engine, inv: rec.Invocation, item: Item) -> None:
    if inv.status == rec.Status.COMPLETED:
        raise _already_completed(inv)
    if inv.status == rec.Status.PAUSED:
        return
    inv.status = rec.Status.PAUSED
    inv.paused_by_user = True
    inv.lease_owner = None
    inv.lease_until_ms = None
    inv.modified_ms = engine.clock.now_ms()
    await engine.backend.write(
        [Put(item.pk, keys.META, rec.encode(inv), expect=item.version, due_ms=None)]
    )


async def _resume(engine: Engine, inv: rec.Invocation, item: Item) -> None:
    if inv.status != rec.Status.PAUSED:
        raise ConflictingRequestError(f"the invocation is {inv.status.value}, not paused")
    now = engine.clock.now_ms()
    inv.status = rec.Status.READY
    inv.paused_by_user = False
    inv.retry_count = 0
    inv.modified_ms = now
    await engine.backend.write(
        [Put(item.pk, keys.META, rec.encode(inv), expect=item.version, due_ms=now)]
    )
    engine.dispatch(inv.id)


async def _purge(engine: Engine, inv: rec.Invocation) -> None:
    if inv.status != rec.Status.COMPLETED:
        raise ConflictingRequestError(f"The invocation '{inv.id}' is not yet completed.")
    items = await engine.backend.query(keys.inv(inv.id))
    await purge_items(engine, inv, items)


async def purge_items(engine: EngineCore, inv: rec.Invocation, items: list[Item]) -> None:
    """Delete a completed invocation's records (and a finished workflow's state and promises).

    The record goes first, with a condition on its version: that fences the id off (a
    concurrent purge of the same invocation loses here, and a new invocation with the same
    derived id cannot be created while the old journal is still there, since its creation is
    create-if-absent). What is left is garbage, deleted without conditions in bulk. A crash in
    between leaves unreachable garbage, never a corrupt invocation.
    """
    meta = next((i for i in items if i.sk == keys.META), None)
    if meta is not None:
        await engine.backend.write([Delete(meta.pk, meta.sk, expect=meta.version)])
    await engine.backend.delete_items([(i.pk, i.sk) for i in items if i.sk != keys.META])
    if inv.handler_kind == "workflow" and inv.key is not None:
        opk = keys.obj(inv.service, inv.key)
        obj_items = await engine.backend.query(opk)
        await engine.backend.delete_items([(i.pk, i.sk) for i in obj_items])


async def get_state(engine: Engine, service: str, key: str) -> dict[str, bytes]:
    """The K/V state of one object or workflow instance."""
    item = await engine.backend.get(keys.obj(service, key), keys.STATE)
    if item is None:
        return {}
    return dict(rec.decode(item.value, rec.StateRecord).entries)
