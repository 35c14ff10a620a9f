"""Applying outbox effects: what one invocation's commit does to other records.

Every effect is idempotent, so the outbox may apply it more than once: children have derived
ids (create-if-absent), notifications are create-if-absent by completion id or signal index,
promise completions remember who completed them, lock releases check the holder, a notify
re-delivers the same result.
"""

from __future__ import annotations

import logging

from invoker import records as rec
from invoker.api import EngineError, InvokeRequest, Target
from invoker.delivery import Delivery
from invoker.ids import awakeable_target, workflow_invocation_id
from invoker.journal import call_children
from invoker.lifecycle import Lifecycle
from invoker.locks import ObjectLocks
from invoker.lookup import Lookup
from invoker.promises import Promises
from invoker.results import Results
from invoker.store import Store
from invoker.submission import Submission
from restate_lambda.protocol.messages import MessageType as T

log = logging.getLogger("restate_lambda.effects")


class Effects:
    """The :class:`~invoker.ports.EffectApplier` of the engine."""

    def __init__(
        self,
        store: Store,
        lookup: Lookup,
        submission: Submission,
        delivery: Delivery,
        results: Results,
        promises: Promises,
        locks: ObjectLocks,
        lifecycle: Lifecycle,
    ) -> None:
        self._store = store
        self._lookup = lookup
        self._submission = submission
        self._delivery = delivery
        self._results = results
        self._promises = promises
        self._locks = locks
        self._lifecycle = lifecycle

    async def apply(self, inv_id: str, effect: rec.Effect, origin: str) -> None:
        """Apply one outbox effect written by invocation ``inv_id``."""
        kind = effect.kind
        if kind == "create":
            await self._create_child(rec.decode(effect.data, rec.ChildSpec))
        elif kind == "signal":
            spec = rec.decode(effect.data, rec.SignalSpec)
            await self._delivery.signal(
                spec.target, spec.idx, spec.name, _result(spec), unique=origin
            )
        elif kind == "awakeable":
            spec = rec.decode(effect.data, rec.SignalSpec)
            try:
                target, idx = awakeable_target(spec.target)
            except ValueError:
                log.warning(
                    "invocation %s completed a malformed awakeable id %r", inv_id, spec.target
                )
                return
            await self._delivery.signal(target, idx, None, _result(spec))
        elif kind == "promise":
            await self._promises.apply(rec.decode(effect.data, rec.PromiseOp))
        elif kind == "attach":
            op = rec.decode(effect.data, rec.AttachOp)
            if op.op == "attach":
                await self._results.attach(
                    op.target,
                    op.invocation_id,
                    op.completion_id,
                    int(T.ATTACH_INVOCATION_COMPLETION_NOTIFICATION),
                )
            else:
                await self._results.output(op.target, op.invocation_id, op.completion_id)
        elif kind == "release":
            release = rec.decode(effect.data, rec.ReleaseOp)
            await self._locks.release(release.service, release.key, release.holder)
        elif kind == "notify":
            await self._results.notify(inv_id)
        elif kind == "kill_children":
            await self._kill_children(inv_id)
        else:
            log.error("unknown effect kind %r from %s; dropping it", kind, inv_id)

    async def _create_child(self, spec: rec.ChildSpec) -> None:
        target = Target(spec.service, spec.handler, spec.key)
        try:
            svc, handler = await self._lookup.find_fresh(target, from_ingress=False)
        except EngineError as exc:
            if spec.caller is not None:
                await self._delivery.completion(
                    spec.caller.invocation_id,
                    int(T.CALL_COMPLETION_NOTIFICATION),
                    spec.caller.completion_id,
                    rec.Result(failure=rec.Failure(exc.status, exc.message)),
                )
            else:
                log.warning(
                    "send from %s to %s/%s dropped: %s",
                    spec.parent_id,
                    spec.service,
                    spec.handler,
                    exc.message,
                )
            return
        request = InvokeRequest(
            target=target,
            body=spec.parameter,
            headers=list(spec.headers),
            idempotency_key=spec.idempotency_key,
        )
        inv_id = spec.invocation_id
        if handler.kind == "workflow":
            inv_id = workflow_invocation_id(svc.name, spec.key or "")
        submitted = await self._submission.submit(
            request,
            svc,
            handler,
            inv_id=inv_id,
            caller=spec.caller,
            parent_id=spec.parent_id,
            scheduled_ms=spec.invoke_time_ms,
        )
        if submitted.created or spec.caller is None:
            return
        existing = submitted.inv
        if existing.parent_id == spec.parent_id and existing.caller == spec.caller:
            return  # our own child, created by an earlier try: it notifies its caller
        if handler.kind == "workflow":
            await self._delivery.completion(
                spec.caller.invocation_id,
                int(T.CALL_COMPLETION_NOTIFICATION),
                spec.caller.completion_id,
                rec.Result(failure=rec.Failure(409, "the workflow method was already invoked")),
            )
            return
        # An idempotent call that latches onto an existing invocation: wait for its result.
        await self._results.attach(
            existing.id,
            spec.caller.invocation_id,
            spec.caller.completion_id,
            int(T.CALL_COMPLETION_NOTIFICATION),
        )

    async def _kill_children(self, inv_id: str) -> None:
        loaded, _items = await self._store.partition(inv_id)
        if loaded is None:
            return
        for child in call_children(loaded.entries):
            await self._lifecycle.kill(child)


def _result(spec: rec.SignalSpec) -> rec.Result | None:
    if spec.failure is not None:
        return rec.Result(failure=spec.failure)
    if spec.value is not None:
        return rec.Result(value=spec.value)
    return None
