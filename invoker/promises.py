"""Workflow promises (``obj/{workflow}/{key}`` / ``p/{name}``): get, peek and complete.

Each operation is the ``promise`` effect of the commit that journaled its command, so it is
applied at least once and must be idempotent:

* ``get`` adds the caller to the promise's waiters (compare-and-set), or delivers the result if
  there is one;
* ``complete`` stores the result and who completed it (compare-and-set; a second completer gets
  409), then delivers to the completer and to every waiter. The waiters stay in the record, so a
  retried ``complete`` (a failed delivery, a crash) delivers to all of them again; deliveries are
  create-if-absent, so nobody gets a result twice.
"""

from __future__ import annotations

import logging

from backends.api import ConflictError, Put
from invoker import keys
from invoker import records as rec
from invoker.commit import Committer
from invoker.delivery import Delivery
from invoker.store import Store, decode_promise
from restate_lambda.protocol.messages import MessageType as T

log = logging.getLogger("restate_lambda.promises")

_ALREADY = rec.Failure(409, "promise was already completed")


class Promises:
    """Applies promise operations of workflows."""

    def __init__(self, store: Store, committer: Committer, delivery: Delivery) -> None:
        self._backend = store.backend
        self._committer = committer
        self._delivery = delivery

    async def apply(self, op: rec.PromiseOp) -> None:
        """Apply one get / peek / complete."""
        pk = keys.obj(op.service, op.key)
        sk = keys.promise(op.name)
        for _ in range(50):
            item = await self._backend.get(pk, sk)
            record = decode_promise(item.value) if item else rec.PromiseRecord()
            version = item.version if item else 0
            if op.op == "peek":
                await self._delivery.completion(
                    op.invocation_id,
                    int(T.PEEK_PROMISE_COMPLETION_NOTIFICATION),
                    op.completion_id,
                    record.result,
                )
                return
            if op.op == "get":
                if await self._get(op, pk, sk, record, version):
                    return
                continue
            if await self._complete(op, pk, sk, record, version):
                return
        raise ConflictError(f"promise {op.service}/{op.key}/{op.name}: too much contention")

    async def _get(
        self, op: rec.PromiseOp, pk: str, sk: str, record: rec.PromiseRecord, version: int
    ) -> bool:
        if record.result is not None:
            await self._delivery.completion(
                op.invocation_id,
                int(T.GET_PROMISE_COMPLETION_NOTIFICATION),
                op.completion_id,
                record.result,
            )
            return True
        waiter = rec.PromiseWaiter(op.invocation_id, op.completion_id)
        if waiter in record.waiters:
            return True
        record.waiters.append(waiter)
        try:
            await self._committer.write([Put(pk, sk, rec.encode(record), expect=version)])
        except ConflictError:
            return False
        return True

    async def _complete(
        self, op: rec.PromiseOp, pk: str, sk: str, record: rec.PromiseRecord, version: int
    ) -> bool:
        me = f"{op.invocation_id}/{op.completion_id}"
        if record.result is None:
            record.result = (
                rec.Result(failure=op.failure)
                if op.failure is not None
                else rec.Result(value=op.value)
            )
            record.completed_by = me
            try:
                await self._committer.write([Put(pk, sk, rec.encode(record), expect=version)])
            except ConflictError:
                return False
        elif record.completed_by != me:
            await self._delivery.completion(
                op.invocation_id,
                int(T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION),
                op.completion_id,
                rec.Result(failure=_ALREADY),
            )
            return True
        # Ours (now, or in an earlier try of this effect): deliver to everyone, again if need be.
        await self._delivery.completion(
            op.invocation_id,
            int(T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION),
            op.completion_id,
            None,
        )
        for w in record.waiters:
            await self._delivery.completion(
                w.invocation_id,
                int(T.GET_PROMISE_COMPLETION_NOTIFICATION),
                w.completion_id,
                record.result,
            )
        return True
