"""Effects an attempt has on other records, applied after its commit (the outbox).

Each effect is idempotent, so re-applying one after a crash (the sweeper does) is harmless:
children have derived ids (create-if-absent), notifications are create-if-absent by completion
id or signal index, promise completions remember who completed them, lock releases check the
holder.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from backends.api import ConflictError, Delete, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.api import EngineError, InvokeRequest, Target
from invoker.ids import awakeable_target
from invoker.processing import signal_entry
from restate_lambda.protocol.messages import MessageType as T

if TYPE_CHECKING:
    from invoker.engine import Engine
    from invoker.engine_core import EngineCore

log = logging.getLogger("restate_lambda.effects")

_lock_decoder = msgspec.msgpack.Decoder(rec.LockRecord)
_promise_decoder = msgspec.msgpack.Decoder(rec.PromiseRecord)
_inv_decoder = msgspec.msgpack.Decoder(rec.Invocation)


async def apply_effect(engine: Engine, inv_id: str, effect: rec.Effect) -> None:
    """Apply one outbox effect produced by invocation ``inv_id``."""
    kind = effect.kind
    if kind == "create":
        await _create_child(engine, rec.decode(effect.data, rec.ChildSpec))
    elif kind == "signal":
        spec = rec.decode(effect.data, rec.SignalSpec)
        await deliver_signal(engine, spec.target, spec.idx, spec.name, _result(spec))
    elif kind == "awakeable":
        spec = rec.decode(effect.data, rec.SignalSpec)
        try:
            target, idx = awakeable_target(spec.target)
        except ValueError:
            log.warning("invocation %s completed a malformed awakeable id %r", inv_id, spec.target)
            return
        await deliver_signal(engine, target, idx, None, _result(spec))
    elif kind == "promise":
        await _promise(engine, rec.decode(effect.data, rec.PromiseOp))
    elif kind == "attach":
        await _attach(engine, rec.decode(effect.data, rec.AttachOp))
    elif kind == "release":
        op = rec.decode(effect.data, rec.ReleaseOp)
        await release_lock(engine, op.service, op.key, op.holder)
    else:
        log.error("unknown effect kind %r from %s; dropping it", kind, inv_id)


def _result(spec: rec.SignalSpec) -> rec.Result | None:
    if spec.failure is not None:
        return rec.Result(failure=spec.failure)
    if spec.value is not None:
        return rec.Result(value=spec.value)
    return None


async def deliver_signal(
    engine: Engine, target: str, idx: int | None, name: str | None, result: rec.Result | None
) -> bool:
    """Deliver a signal (by index or name) to ``target``."""
    entry = signal_entry(idx, name, result)
    if name is not None:
        sk = keys.named_signal_notification(name, f"{engine.clock.now_ms():015d}-{id(entry)}")
    else:
        sk = keys.signal_notification(idx or 0)
    return await engine.deliver(target, sk, entry)


async def _create_child(engine: Engine, spec: rec.ChildSpec) -> None:
    target = Target(spec.service, spec.handler, spec.key)
    try:
        svc, handler = await engine.lookup_fresh(target, from_ingress=False)
    except EngineError as exc:
        if spec.caller is not None:
            await engine.deliver_completion(
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
        from invoker.ids import workflow_invocation_id

        inv_id = workflow_invocation_id(svc.name, spec.key or "")
    existing, created = await engine._submit(
        request,
        svc,
        handler,
        inv_id=inv_id,
        caller=spec.caller,
        parent_id=spec.parent_id,
        scheduled_ms=spec.invoke_time_ms,
    )
    if created or spec.caller is None:
        return
    ours = existing.parent_id == spec.parent_id and existing.caller == spec.caller
    if handler.kind == "workflow" and not ours:
        await engine.deliver_completion(
            spec.caller.invocation_id,
            int(T.CALL_COMPLETION_NOTIFICATION),
            spec.caller.completion_id,
            rec.Result(failure=rec.Failure(409, "the workflow method was already invoked")),
        )
        return
    # An idempotent call that latches onto an existing invocation, or our own child after a
    # crash: wait for its result like an attach.
    await register_waiter(
        engine,
        existing.id,
        spec.caller.invocation_id,
        spec.caller.completion_id,
        int(T.CALL_COMPLETION_NOTIFICATION),
    )


async def register_waiter(
    engine: Engine, target: str, waiter: str, completion_id: int, msg_type: int
) -> None:
    """Have ``target`` deliver its result to ``waiter`` (now, if it already completed)."""
    pk = keys.inv(target)
    item = await engine.backend.get(pk, keys.META)
    if item is not None and _inv_decoder.decode(item.value).status == rec.Status.COMPLETED:
        await engine.deliver_completion(
            waiter, msg_type, completion_id, _inv_decoder.decode(item.value).result
        )
        return  # no waiter item: it would outlive a record that expires in the store
    try:
        await engine.backend.write(
            [Put(pk, keys.waiter(waiter, completion_id), rec.encode(msg_type))]
        )
    except ConflictError:
        pass  # already registered
    item = await engine.backend.get(pk, keys.META)
    if item is None:
        await engine.deliver_completion(
            waiter,
            msg_type,
            completion_id,
            rec.Result(failure=rec.Failure(404, f"invocation {target} not found")),
        )
        return
    inv = _inv_decoder.decode(item.value)
    if inv.status == rec.Status.COMPLETED:
        await engine.deliver_completion(waiter, msg_type, completion_id, inv.result)


async def _attach(engine: Engine, op: rec.AttachOp) -> None:
    if op.op == "attach":
        await register_waiter(
            engine,
            op.target,
            op.invocation_id,
            op.completion_id,
            int(T.ATTACH_INVOCATION_COMPLETION_NOTIFICATION),
        )
        return
    item = await engine.backend.get(keys.inv(op.target), keys.META)
    result: rec.Result | None = None
    if item is not None:
        inv = _inv_decoder.decode(item.value)
        if inv.status == rec.Status.COMPLETED:
            result = inv.result
    await engine.deliver_completion(
        op.invocation_id,
        int(T.GET_INVOCATION_OUTPUT_COMPLETION_NOTIFICATION),
        op.completion_id,
        result,
    )


async def _promise(engine: Engine, op: rec.PromiseOp) -> None:
    pk = keys.obj(op.service, op.key)
    sk = keys.promise(op.name)
    me = f"{op.invocation_id}/{op.completion_id}"
    for _ in range(50):
        item = await engine.backend.get(pk, sk)
        record = _promise_decoder.decode(item.value) if item else rec.PromiseRecord()
        version = item.version if item else 0
        if op.op == "peek":
            await engine.deliver_completion(
                op.invocation_id,
                int(T.PEEK_PROMISE_COMPLETION_NOTIFICATION),
                op.completion_id,
                record.result,
            )
            return
        if op.op == "get":
            if record.result is not None:
                await engine.deliver_completion(
                    op.invocation_id,
                    int(T.GET_PROMISE_COMPLETION_NOTIFICATION),
                    op.completion_id,
                    record.result,
                )
                return
            waiter = rec.PromiseWaiter(op.invocation_id, op.completion_id)
            if waiter in record.waiters:
                return
            record.waiters.append(waiter)
            try:
                await engine.backend.write([Put(pk, sk, rec.encode(record), expect=version)])
            except ConflictError:
                continue
            return
        # complete
        if record.result is not None:
            ok = record.completed_by == me
            await engine.deliver_completion(
                op.invocation_id,
                int(T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION),
                op.completion_id,
                None
                if ok
                else rec.Result(failure=rec.Failure(409, "promise was already completed")),
            )
            return
        result = (
            rec.Result(failure=op.failure) if op.failure is not None else rec.Result(value=op.value)
        )
        waiters = record.waiters
        done = rec.PromiseRecord(result=result, waiters=[], completed_by=me)
        try:
            await engine.backend.write([Put(pk, sk, rec.encode(done), expect=version)])
        except ConflictError:
            continue
        await engine.deliver_completion(
            op.invocation_id,
            int(T.COMPLETE_PROMISE_COMPLETION_NOTIFICATION),
            op.completion_id,
            None,
        )
        for w in waiters:
            await engine.deliver_completion(
                w.invocation_id,
                int(T.GET_PROMISE_COMPLETION_NOTIFICATION),
                w.completion_id,
                result,
            )
        return
    log.warning("promise %s/%s/%s: too much contention", op.service, op.key, op.name)


async def release_lock(engine: EngineCore, service: str, key: str, holder: str | None) -> None:
    """Pass the lock of ``service/key`` from ``holder`` to the next queued invocation.

    Idempotent: nothing happens unless ``holder`` still holds the lock. Queued invocations that
    completed while waiting (cancelled or killed) are skipped.
    """
    opk = keys.obj(service, key)
    async with engine._key_lock(service, key):
        # This path reads and writes the record without the engine's cache.
        engine._forget_lock(opk)
        try:
            for _ in range(1000):
                item = await engine.backend.get(opk, keys.LOCK)
                if item is None:
                    return
                lock = _lock_decoder.decode(item.value)
                if lock.holder != holder:
                    return
                if lock.head >= lock.tail:
                    lock.holder = None
                    try:
                        await engine.backend.write(
                            [Put(opk, keys.LOCK, rec.encode(lock), expect=item.version)]
                        )
                    except ConflictError:
                        continue
                    return
                q = await engine.backend.get(opk, keys.inbox(lock.head))
                next_id = q.value.decode() if q is not None else None
                ops: list[WriteOp] = []
                if q is not None:
                    ops.append(Delete(opk, q.sk, expect=q.version))
                lock.head += 1
                meta = await engine.backend.get(keys.inv(next_id), keys.META) if next_id else None
                nxt = _inv_decoder.decode(meta.value) if meta else None
                claimed = None
                if meta is not None and nxt is not None and nxt.status == rec.Status.INBOXED:
                    lock.holder = nxt.id
                    now = engine.clock.now_ms()
                    nxt.status, due, is_claimed = engine._initial_run_status(nxt, now)
                    ops.append(
                        Put(meta.pk, keys.META, rec.encode(nxt), expect=meta.version, due_ms=due)
                    )
                    claimed = is_claimed
                else:
                    lock.holder = None  # skip a queued invocation that already completed
                ops.insert(0, Put(opk, keys.LOCK, rec.encode(lock), expect=item.version))
                try:
                    await engine.backend.write(ops)
                except ConflictError:
                    continue
                if lock.holder is None:
                    holder = None
                    continue
                assert nxt is not None and meta is not None
                if claimed:
                    from invoker.engine_core import Claimed
                    from invoker.journal import decode_segment

                    seg = await engine.backend.get(keys.inv(nxt.id), keys.journal(0))
                    entries = decode_segment(seg.value) if seg else []
                    engine.dispatch(nxt.id, Claimed(nxt, meta.version + 1, entries))
                else:
                    engine.dispatch(nxt.id)
                return
        finally:
            engine._forget_lock(opk)
