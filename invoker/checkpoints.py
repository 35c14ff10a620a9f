"""The checkpoint channel, runtime side: steps made durable in the middle of an attempt.

In request-response mode (Lambda, HTTP/1.1) a handler cannot get acknowledgements back on its
own response stream, so without help it must end its attempt after every ``ctx.run`` to have
the result journaled. The channel (contract in :mod:`restate_lambda.checkpoint`) lets our SDK
hand the entries written so far to the runtime and continue once they are durable: a handler
of N steps runs in one invocation, every step durable before the next.

Every attempt carries a random fencing token (:attr:`records.Invocation.attempt_token`, new for
each attempt). A checkpoint is one commit, fenced like every other by the invocation record's
version, and accepted only while the record is RUNNING with that token and its journal is as
long as the handler believes; it renews the attempt's lease. It journals the notifications
that arrived meanwhile first and returns them to the handler, then the batch's entries, state
and effects (outbox), exactly as the end of an attempt would. A retried request for a batch
already applied is answered from the journal. Because it goes through the store only, the
channel works whichever process receives it (in process, the dev server's ingress, another
Lambda instance on AWS); the engine that runs the attempt notices from the response
(``x-restate-journal-index``) that the journal moved and re-reads it before settling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from backends.api import ConflictError
from invoker import records as rec
from invoker.journal import Loaded, take_pending
from invoker.ports import Claimed
from invoker.processing import AttemptInput, ProtocolViolation, process
from invoker.settle import Settler
from invoker.store import Store
from restate_lambda.checkpoint import CheckpointBatch, CheckpointFencedError
from restate_lambda.clock import Clock
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.framing import decode_all, encode_raw

log = logging.getLogger("restate_lambda.checkpoints")

_TRIES = 10


class CheckpointRefused(Exception):
    """The attempt does not own the invocation any more, or the journal moved on (409)."""


class CheckpointInvalid(Exception):
    """The batch breaks the protocol (400)."""


class Checkpoints:
    """Commits checkpoints sent by handlers."""

    def __init__(
        self,
        store: Store,
        settler: Settler,
        clock: Clock,
        in_flight: Mapping[str, Claimed] | None = None,
    ) -> None:
        self._store = store
        self._settler = settler
        self._clock = clock
        #: Attempts running in this process: one whose invocation is not stored yet (a
        #: blocking call's creation waits for its first commit) checkpoints from memory.
        self._in_flight: Mapping[str, Claimed] = in_flight if in_flight is not None else {}

    async def commit(self, inv_id: str, token: str, journal_index: int, frames: bytes) -> bytes:
        """Make ``frames`` durable at ``journal_index``; the framed notifications journaled
        ahead of them (see the module docstring).

        Raises:
            CheckpointRefused: fenced off (another attempt owns the invocation) or the journal
                is not where the handler believes.
            CheckpointInvalid: the frames are not a valid checkpoint.
            CommitUnknownError: storage kept failing.
        """
        try:
            messages = [(f.type, f.payload) for f in decode_all(frames)]
        except ProtocolError as exc:
            raise CheckpointInvalid(f"malformed checkpoint: {exc}") from exc
        from_memory = True
        for _ in range(_TRIES):
            live = self._in_flight.get(inv_id)
            loaded: Loaded | None
            if from_memory and live is not None and live.inv.attempt_token == token:
                # The attempt runs in this process: its record and journal are in memory, and
                # the commit's fence (the record's version) tells if the store moved on. Only
                # the notifications that arrived meanwhile are read.
                loaded = await self._from_memory(live)
            else:
                loaded, _items = await self._store.partition(inv_id)
                if loaded is None:
                    if live is None or live.unsaved is None or live.inv.attempt_token != token:
                        raise CheckpointRefused(f"invocation {inv_id} does not exist")
                    loaded = Loaded(live.inv, live.version, live.entries)
            inv = loaded.invocation
            if inv.status != rec.Status.RUNNING or inv.attempt_token != token:
                raise CheckpointRefused(f"the attempt of {inv_id} was fenced off")
            if inv.checkpoint is not None and inv.checkpoint[0] == journal_index:
                return await self._replay(inv, loaded.entries)  # a retried request
            if inv.journal_len != journal_index:
                raise CheckpointRefused(
                    f"the journal of {inv_id} holds {inv.journal_len} entries, the handler "
                    f"checkpoints at {journal_index}"
                )
            arrived = take_pending(loaded, self._clock.now_ms())
            state, state_version = await self._state(inv)
            try:
                processed = process(
                    messages,
                    AttemptInput(
                        invocation_id=inv.id,
                        service=inv.service,
                        handler=inv.handler,
                        key=inv.key,
                        service_kind=inv.service_kind,
                        can_write_state=rec.writes_state(inv),
                        journal_len=inv.journal_len + len(arrived.entries),
                        commands_len=inv.commands_len,
                        state=state,
                        now_ms=self._clock.now_ms(),
                    ),
                    final=False,
                )
            except ProtocolViolation as exc:
                raise CheckpointInvalid(str(exc)) from exc
            if live is not None and live.inv is inv:
                st = live  # the attempt's own view, kept current (its first commit may create it)
            else:
                st = Claimed(inv, loaded.version, loaded.entries)
            try:
                await self._settler.checkpoint(st, processed, state_version, arrived, journal_index)
            except ConflictError:
                # The record changed (a kill, another engine): look again, at the store. The
                # attempt notices the journal moved (or is fenced off) when it ends.
                from_memory = False
                continue
            return b"".join(encode_raw(ty, payload) for ty, payload in arrived.entries)
        raise CheckpointRefused(f"invocation {inv_id} changes too fast to checkpoint")

    async def _from_memory(self, live: Claimed) -> Loaded:
        """``live``'s record and journal, with the notifications stored for it meanwhile."""
        if live.unsaved is not None:  # not stored yet: nothing can have arrived for it
            return Loaded(live.inv, live.version, live.entries)
        return await self._store.with_pending(live.inv, live.version, live.entries)

    async def _replay(self, inv: rec.Invocation, entries: list[tuple[int, bytes]]) -> bytes:
        """The reply to a batch already applied: the notifications journaled ahead of it."""
        assert inv.checkpoint is not None
        start, first_own, _end = inv.checkpoint
        return b"".join(encode_raw(ty, payload) for ty, payload in entries[start:first_own])

    async def _state(self, inv: rec.Invocation) -> tuple[dict[str, bytes], int]:
        if inv.key is None or inv.service_kind == "service":
            return {}, 0
        return await self._store.state(inv.service, inv.key)


class LocalCheckpointer:
    """The channel offered to in-process handlers: a direct call into :class:`Checkpoints`
    (implements :class:`restate_lambda.checkpoint.Checkpointer`)."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self._checkpoints = checkpoints

    async def checkpoint(self, batch: CheckpointBatch) -> bytes:
        """Commit ``batch``; :class:`CheckpointFencedError` when refused."""
        try:
            return await self._checkpoints.commit(
                batch.invocation_id, batch.token, batch.journal_index, batch.entries
            )
        except (CheckpointRefused, CheckpointInvalid) as exc:
            raise CheckpointFencedError(str(exc)) from exc
