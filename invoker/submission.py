"""Creating invocations, once per id: from the ingress, and as children of other invocations.

The id rule (design decision 5) decides what "once" means: an idempotent request, a workflow
run and a child call each have an id derived from what defines them (:mod:`invoker.ids`), so a
duplicate is a create-if-absent conflict that turns into a read of the existing invocation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backends.api import ConflictError, Put, WriteOp
from invoker import journal, keys, tracing
from invoker import records as rec
from invoker.api import (
    ConflictingRequestError,
    InvokeRequest,
    PayloadTooLargeError,
    Target,
)
from invoker.commit import Committer, CommitUnknownError
from invoker.config import EngineConfig
from invoker.ids import idempotent_invocation_id, new_invocation_id, workflow_invocation_id
from invoker.locks import ObjectLocks
from invoker.policies import Leases
from invoker.ports import Claimed, Dispatch
from invoker.processing import Entry
from invoker.registry_model import HandlerInfo, ServiceInfo
from invoker.store import Store
from restate_lambda.clock import Clock
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import pb

log = logging.getLogger("restate_lambda.submission")

_STRIPPED_HEADERS = frozenset(
    {
        "connection",
        "host",
        "content-length",
        "transfer-encoding",
        "idempotency-key",
        "idempotency-expires",
        "keep-alive",
        "upgrade",
        "expect",
    }
)


def invocation_id_for(svc: ServiceInfo, handler: HandlerInfo, request: InvokeRequest) -> str:
    """The id rule: workflow run by workflow id, idempotent request by its key, else random."""
    target = request.target
    if handler.kind == "workflow":
        return workflow_invocation_id(svc.name, target.key or "")
    if request.idempotency_key:
        return idempotent_invocation_id(
            target.service, target.handler, target.key, request.idempotency_key
        )
    return new_invocation_id()


def idempotent_id(target: Target, idempotency_key: str) -> str:
    """Invocation id of an idempotent request."""
    return idempotent_invocation_id(target.service, target.handler, target.key, idempotency_key)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted invocation: the stored record (or the one about to be) and whether it is new."""

    inv: rec.Invocation
    created: bool


class Submission:
    """Creates invocation records (and takes or queues for a key's lock)."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        clock: Clock,
        config: EngineConfig,
        leases: Leases,
        locks: ObjectLocks,
        dispatch: Dispatch,
        purge_if_expired: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._purge_if_expired = purge_if_expired
        self._store = store
        self._committer = committer
        self._clock = clock
        self._config = config
        self._leases = leases
        self._locks = locks
        self._dispatch = dispatch

    async def submit(
        self,
        request: InvokeRequest,
        svc: ServiceInfo,
        handler: HandlerInfo,
        *,
        inv_id: str,
        caller: rec.CallerRef | None = None,
        parent_id: str | None = None,
        scheduled_ms: int | None = None,
        run_here: bool = False,
        defer: bool = False,
    ) -> Submitted:
        """Create an invocation (or find the existing one with the same id).

        ``defer``: a blocking call with a fresh random id that this engine runs right away
        writes its creation together with its first attempt's commit. Nothing is acknowledged
        before that commit (the client learns the id only with the response), so a crash
        before it loses nothing acknowledged.

        An existing invocation whose retention ended (a repeated idempotency key, its record
        not deleted yet: DynamoDB's TTL takes up to days) is forgotten and the request starts
        a new one, as Restate does once the old one is gone. A workflow's run is left to the
        sweeper's purge (which takes its state and promises with it).
        """
        args = (request, svc, handler, inv_id, caller, parent_id, scheduled_ms, run_here, defer)
        submitted = await self._submit(*args)
        old = submitted.inv
        if (
            submitted.created
            or old.handler_kind == "workflow"
            or not rec.past_retention(old, self._clock.now_ms())
        ):
            return submitted
        if self._purge_if_expired is None:
            return submitted
        try:
            # The sweeper's purge: it waits while effects of the old one are pending (then the
            # next look finds it again and its outcome stays the answer).
            await self._purge_if_expired(inv_id)
        except ConflictError:
            pass  # changed meanwhile: the next look finds what is there now
        return await self._submit(*args)

    async def _submit(
        self,
        request: InvokeRequest,
        svc: ServiceInfo,
        handler: HandlerInfo,
        inv_id: str,
        caller: rec.CallerRef | None,
        parent_id: str | None,
        scheduled_ms: int | None,
        run_here: bool,
        defer: bool,
    ) -> Submitted:
        """:meth:`submit`, once."""
        if len(request.body) > self._config.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body of {len(request.body)} bytes exceeds the limit of "
                f"{self._config.max_body_bytes} bytes"
            )
        now = self._clock.now_ms()
        if scheduled_ms is None and request.delay_ms:
            scheduled_ms = now + request.delay_ms
        inv = rec.Invocation(
            id=inv_id,
            service=svc.name,
            handler=handler.name,
            key=request.target.key,
            service_kind=svc.kind,
            handler_kind=handler.kind,
            created_ms=now,
            modified_ms=now,
            scheduled_ms=scheduled_ms,
            idempotency_key=request.idempotency_key,
            invoked_by="service" if parent_id else "ingress",
            caller=caller,
            parent_id=parent_id,
            commands_len=1,
            last_stored_ms=now,
            random_seed=random_seed_of(inv_id),
        )
        if (tracer := tracing.current()) is not None:
            inv.trace = tracer.new_context(request.headers)
        entries = [_input_entry(request)]
        pk = keys.inv(inv_id)
        ops: list[WriteOp] = journal.append(inv, entries)
        exclusive = svc.kind == "virtual_object" and handler.kind == "exclusive"
        claimed = False
        if scheduled_ms is not None and scheduled_ms > now:
            inv.status = rec.Status.SCHEDULED
            due: int | None = scheduled_ms
        elif exclusive:
            inv, created = await self._locks.enqueue(
                inv, ops, entries, run_here=run_here, defer=defer and not request.idempotency_key
            )
            if not created:
                self._drive_if_ours(inv)
            return Submitted(inv, created)
        else:
            inv.status, due, claimed = self._leases.initial(inv, now, run_here)
            if claimed and defer and svc.kind != "workflow" and not request.idempotency_key:
                self._dispatch.dispatch(inv_id, Claimed(inv, 0, entries, unsaved=ops))
                return Submitted(inv, True)
        meta = Put(pk, keys.META, rec.encode(inv), expect=0, due_ms=due)
        try:
            await self._committer.write([meta, *ops])
        except ConflictError:
            existing = await self.existing(inv_id)
            self._drive_if_ours(existing)
            return Submitted(existing, False)
        except CommitUnknownError:
            # Maybe stored, maybe under this engine's own lease: have it looked at.
            self._dispatch.dispatch(inv_id)
            raise
        if claimed:
            self._dispatch.dispatch(inv_id, Claimed(inv, 1, entries))
        elif inv.status == rec.Status.READY:
            self._dispatch.dispatch(inv_id)
        elif due is not None:
            self._dispatch.due_at(inv_id, due)
        return Submitted(inv, True)

    def _drive_if_ours(self, inv: rec.Invocation) -> None:
        """A duplicate found ``inv`` runnable or leased to this engine (an earlier submission
        whose outcome was unknown): make sure it is driven."""
        ours = inv.status == rec.Status.RUNNING and inv.lease_owner == self._leases.node_id
        if ours or inv.status == rec.Status.READY:
            self._dispatch.dispatch(inv.id)

    async def existing(self, inv_id: str) -> rec.Invocation:
        """The stored invocation ``inv_id`` (after a create-if-absent conflict)."""
        found = await self._store.invocation(inv_id)
        if found is None:  # purged between the conflict and this read: extremely unlikely
            raise ConflictingRequestError("the invocation was concurrently purged; retry")
        return found.inv


def random_seed_of(inv_id: str) -> int:
    """The seed of ``ctx.random()``: derived from the invocation id, so it is the same on
    every attempt and in every run of a test (ids of random invocations are random anyway)."""
    return int.from_bytes(hashlib.blake2b(inv_id.encode(), digest_size=8).digest(), "big") >> 1


def _input_entry(request: InvokeRequest) -> Entry:
    headers = [(k, v) for k, v in request.headers if k.lower() not in _STRIPPED_HEADERS]
    input_msg = pb().InputCommandMessage()
    for k, v in headers:
        input_msg.headers.add(key=k, value=v)
    input_msg.value.content = request.body
    return int(T.INPUT_COMMAND), input_msg.SerializeToString()
