"""Driving one invocation: claim it, run attempts while it can make progress, settle each.

The unit a driver task (or a Lambda worker's message) executes. Storage errors, bugs and
crashes never leave an attempt half-recorded: every outcome goes through one commit
(:mod:`invoker.settle`); if even that cannot happen, the invocation's record stays due at its
lease end and the sweeper resumes it from what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from invoker import tracing
from invoker.attempt import Attempts, Terminal
from invoker.bidi import Bidi
from invoker.claims import Claims, Retry
from invoker.commit import CommitUnknownError
from invoker.drivers import Drivers
from invoker.ports import Claimed
from invoker.processing import AttemptError
from invoker.settle import Settler
from invoker.store import Store

log = logging.getLogger("restate_lambda.runner")

#: Claims lost to a concurrent change before giving up to the sweeper.
_CLAIM_TRIES = 20
#: After storage failed with an unknown outcome: pauses (seconds, real time) before this engine
#: looks again, then it leaves the invocation to its lease's end and the sweeper.
_STORAGE_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)
#: Stands for the attempt span while tracing is off (:mod:`invoker.tracing`).
_NO_SPAN = contextlib.nullcontext()


class Runner:
    """Drives invocations (bound into :class:`~invoker.drivers.Drivers`)."""

    def __init__(
        self,
        store: Store,
        claims: Claims,
        attempts: Attempts,
        settler: Settler,
        drivers: Drivers,
        bidi: Bidi,
        max_concurrent_attempts: int,
        in_flight: dict[str, Claimed] | None = None,
    ) -> None:
        self._store = store
        self._claims = claims
        self._attempts = attempts
        self._settler = settler
        self._drivers = drivers
        self._bidi = bidi
        self._slots = asyncio.Semaphore(max_concurrent_attempts)
        #: The attempts running now (their invocation ids), for in-process checkpoints.
        self._in_flight = in_flight if in_flight is not None else {}

    async def drive(self, inv_id: str, claimed: Claimed | None, reraise: bool) -> None:
        """Drive ``inv_id`` until it cannot make progress here (see the module docstring)."""
        deferred = claimed.deferred_lock if claimed is not None else None
        try:
            tries = 0
            storage_failures = 0
            while True:
                self._drivers.again(inv_id)
                try:
                    st: Claimed | Retry | None = claimed or await self._claims.claim(inv_id)
                    claimed = None
                    if st is Retry.AGAIN:
                        tries += 1
                        if tries >= _CLAIM_TRIES:
                            return
                        continue
                    if isinstance(st, Claimed):
                        async with self._slots:
                            await self._run(st)
                except CommitUnknownError as exc:
                    # Storage is failing; what is stored is the truth. Look again shortly (the
                    # claim re-reads it), then leave it to the lease's end and the sweeper.
                    if storage_failures >= len(_STORAGE_BACKOFF_S):
                        log.warning(
                            "invocation %s: storage unavailable (%s); left to the sweeper",
                            inv_id,
                            exc,
                        )
                        return
                    await asyncio.sleep(_STORAGE_BACKOFF_S[storage_failures])
                    storage_failures += 1
                    continue
                if not self._drivers.again(inv_id):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("driving invocation %s failed; the sweeper will retry it", inv_id)
            if reraise:
                raise
        finally:
            if deferred is not None:
                deferred.release(None)  # the attempt ended, maybe unstored: the key is free

    async def _run(self, st: Claimed) -> None:
        """Run attempts while the invocation can make progress without waiting."""
        try:
            state, state_version = await self._load_state(st)
            tracer = tracing.current()
            while True:
                with tracer.attempt(st) if tracer is not None else _NO_SPAN:
                    prepared = await self._attempts.prepare(st, state)
                    if isinstance(prepared, AttemptError):
                        await self._settler.fail(st, prepared)
                        return
                    if prepared.bidi:
                        cont = await self._bidi.run(st, prepared, state, state_version)
                        if cont is None:
                            return
                        state, state_version = cont.state, cont.state_version
                        continue
                    self._in_flight[st.inv.id] = st
                    version = st.version
                    try:
                        reply = await self._attempts.exchange(st, prepared)
                    finally:
                        self._in_flight.pop(st.inv.id, None)
                    if isinstance(reply, Terminal):
                        await self._settler.terminal(st, reply.failure)
                        return
                    if isinstance(reply, AttemptError):
                        await self._settler.fail(st, reply)
                        return
                    if self._attempts.journal_moved(st, reply):
                        # The handler checkpointed: continue from what is stored now.
                        if not await self._reload(st):
                            return
                        state, state_version = await self._load_state(st)
                    elif st.version != version:
                        # Checkpoints committed through this attempt's own view: the journal in
                        # memory is current, the object's state moved with them.
                        state, state_version = await self._load_state(st)
                    outcome = self._attempts.parse(st, reply, state)
                    if isinstance(outcome, AttemptError):
                        await self._settler.fail(st, outcome)
                        return
                    cont = await self._settler.settle(st, outcome, state_version)
                    if cont is None:
                        return
                    state, state_version = cont.state, cont.state_version
        except CommitUnknownError:
            raise
        except Exception as exc:
            # A bug or a storage outage while reading: fail the attempt so it is retried with
            # backoff instead of waiting for the lease to expire.
            log.exception("attempt of %s failed unexpectedly", st.inv.id)
            try:
                await self._settler.fail(st, AttemptError(500, f"internal error: {exc!r}"))
            except Exception:
                log.exception("could not record the failed attempt of %s", st.inv.id)

    async def _reload(self, st: Claimed) -> bool:
        """Re-read ``st`` after checkpoints moved it; False if this attempt lost it."""
        loaded, _items = await self._store.partition(st.inv.id)
        token = st.inv.attempt_token
        if loaded is None or loaded.invocation.attempt_token != token or token is None:
            log.info("invocation %s: the attempt was fenced off during its checkpoints", st.inv.id)
            return False
        st.inv, st.version, st.entries = loaded.invocation, loaded.version, loaded.entries
        st.saved()
        return True

    async def _load_state(self, st: Claimed) -> tuple[dict[str, bytes], int]:
        inv = st.inv
        if inv.key is None or inv.service_kind == "service":
            return {}, 0
        return await self._store.state(inv.service, inv.key)
