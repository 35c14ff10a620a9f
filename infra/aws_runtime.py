"""One Lambda sandbox's runtime: backend, engine, SQS dispatcher and Lambda transport.

Built lazily on the first invocation (cold start) and kept for warm ones. It owns one event loop
(Lambda calls handlers synchronously; every entry point runs its coroutine to completion on that
loop, so clients, connection pools and the registry cache survive between invocations) and waits
for all background work (:meth:`invoker.engine.Engine.drain`) before returning, because the
sandbox freezes as soon as the handler returns.

The engine runs with ``run_locally=False``: runnable invocations go to the SQS work queue, except
that a blocking ingress call runs its own invocation inline (``RESTATE_LAMBDA_INLINE_CALLS``).

Checkpoint channel: attempts offer handlers the ARN of a function that commits checkpoints
(:mod:`infra.checkpoint_events`): ``RESTATE_LAMBDA_CHECKPOINT_URL``, or else the function the
sandbox runs in (its Lambda context's ``invoked_function_arn``, seen on the first invocation).
Every entry point accepts checkpoint events (:meth:`AwsRuntime.checkpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from backends.api import Backend
from infra.settings import AwsSettings
from invoker.config import EngineConfig
from invoker.deadlines import call_deadline
from invoker.dispatch import SqsDispatcher, schedule_upcoming
from invoker.engine import RuntimeEngine
from invoker.worker import work_batch
from restate_lambda.clock import Clock, SystemClock

if TYPE_CHECKING:
    from invoker.request_identity import RequestSigner

log = logging.getLogger("restate_lambda.aws")

_T = TypeVar("_T")

#: How long a warm sandbox trusts its registry cache before re-reading it.
REGISTRY_MAX_AGE_MS = 10_000
#: The sweeper stops taking new batches after this long (its Lambda timeout is 60 s).
SWEEP_BUDGET_S = 40.0


class AwsRuntime:
    """The engine and its clients for one Lambda sandbox.

    Args:
        settings: what to connect to.
        clock: injected for tests (default: the system clock).
        backend: an open backend (default: ``open_backend(settings.storage)``).
        sqs_client: a boto3 SQS client (default: made from the settings).
        config: engine settings (default: the ingress body limit from ``settings``).
    """

    def __init__(
        self,
        settings: AwsSettings,
        *,
        clock: Clock | None = None,
        backend: Backend | None = None,
        sqs_client: Any = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.loop = asyncio.new_event_loop()
        self._backend = backend
        self._sqs_client = sqs_client
        self._config = config
        self._engine: RuntimeEngine | None = None
        self._started = False
        self._owns_backend = backend is None
        self._ingress: Any = None
        self._ingress_app: Any = None
        self._admin: Any = None
        self._admin_app: Any = None
        #: The ARN of the function this sandbox runs in (from the first invocation's context).
        self.function_arn: str | None = None

    # ------------------------------------------------------------------ construction
    @property
    def engine(self) -> RuntimeEngine:
        """The engine (constructed on first use; no I/O)."""
        if self._engine is None:
            self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> RuntimeEngine:
        from backends.registry import open_backend
        from invoker.lambda_transport import LambdaTransport
        from invoker.transport import Transports

        s = self.settings
        backend = self._backend or open_backend(s.storage)
        transports = Transports(
            lambda_=LambdaTransport(
                endpoint_url=s.lambda_endpoint_url,
                sts_endpoint_url=s.sts_endpoint_url,
                external_id=s.assume_role_external_id,
            ),
            signer=self._signer(),
        )
        dispatcher = SqsDispatcher(
            s.require_queue(),
            self.clock,
            client=self._sqs_client,
            region=s.region,
            endpoint_url=s.sqs_endpoint_url,
        )
        config = self._config or dataclasses.replace(
            EngineConfig.from_env(), max_body_bytes=s.max_body_bytes
        )
        config = dataclasses.replace(config, checkpoint_url=s.checkpoint_target(self.function_arn))
        engine = RuntimeEngine(
            backend, self.clock, transports, config, run_locally=False, dispatcher=dispatcher
        )
        engine.inline_calls = s.inline_calls
        return engine

    def _signer(self) -> RequestSigner | None:
        """The request-identity signer ``RESTATE_LAMBDA_REQUEST_IDENTITY_KEY`` names (read once
        per sandbox, on the first invocation), or None."""
        source = self.settings.request_identity_key
        if source is None:
            return None
        from infra.identity_keys import load_signer

        # Wall time, not the runtime's clock: the SDK checks the token against wall time.
        signer = load_signer(source, region=self.settings.region)
        log.info("signing requests to deployments as %s", signer.public_key)
        return signer

    @property
    def dispatcher(self) -> SqsDispatcher:
        """The engine's SQS dispatcher."""
        dispatcher = self.engine.dispatcher
        assert isinstance(dispatcher, SqsDispatcher)
        return dispatcher

    async def ready(self) -> RuntimeEngine:
        """The started engine, its registry no older than :data:`REGISTRY_MAX_AGE_MS`."""
        engine = self.engine
        if not self._started:
            await engine.start()
            self._started = True
        else:
            await engine.registry.refresh_if_stale(REGISTRY_MAX_AGE_MS)
        return engine

    def seen(self, context: Any) -> None:
        """Note the function this sandbox runs in from a Lambda ``context`` (the checkpoint
        channel's default target); call before the engine is built."""
        if self.function_arn is None:
            arn = getattr(context, "invoked_function_arn", None)
            if isinstance(arn, str) and arn.startswith("arn:"):
                self.function_arn = arn

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` to completion on this sandbox's loop (from synchronous handler code)."""
        asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(coro)

    # ------------------------------------------------------------------ ingress
    def ingress(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway (HTTP API v2, REST v1) or Function URL event."""
        self.seen(context)
        if self._ingress is None:
            from mangum import Mangum

            asyncio.set_event_loop(self.loop)
            self._ingress = Mangum(self._ingress_asgi, lifespan="off")
        asyncio.set_event_loop(self.loop)
        result: dict[str, Any] = self._ingress(event, context)
        return result

    async def _ingress_asgi(self, scope: Any, receive: Any, send: Any) -> None:
        from ingress.ingress_app import create_ingress_app

        engine = await self.ready()
        if self._ingress_app is None:
            self._ingress_app = create_ingress_app(
                engine,
                max_body_bytes=self.settings.max_body_bytes,
                limits=self.settings.ingress_limits(),
            )
        deadline = self._call_deadline(scope)
        token = call_deadline.set(deadline)
        try:
            await self._ingress_app(scope, receive, send)
        finally:
            call_deadline.reset(token)
            # Work started here (effects, an attempt still running) ends with the function's
            # time: what is not done by then is durable and resumed elsewhere (lease, outbox).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, (deadline - self.clock.now_ms()) / 1000)):
                    await engine.drain()

    def _call_deadline(self, scope: Any) -> int:
        """When the request being served must be answered: the API Gateway integration's limit
        (``RESTATE_LAMBDA_CALL_DEADLINE_S``, 28 s by default) or the function's own time left,
        less a margin, whichever comes first."""
        now = self.clock.now_ms()
        deadline = now + int(self.settings.call_deadline_s * 1000)
        context = scope.get("aws.context")
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            deadline = min(deadline, now + int(remaining()) - 2_000)
        return deadline

    # ------------------------------------------------------------------ worker
    def worker(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Drive the invocations named by one SQS batch; report failed records for redelivery."""
        self.seen(context)
        return self.run(self._work(event))

    async def _work(self, event: dict[str, Any]) -> dict[str, Any]:
        engine = await self.ready()
        result = await work_batch(engine, event.get("Records") or [])
        if result.failed or result.dropped:
            log.warning(
                "worker batch: %d done, %d to redeliver, %d dropped",
                result.done,
                len(result.failed),
                result.dropped,
            )
        return result.lambda_response()

    # ------------------------------------------------------------------ sweeper
    def sweeper(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Fire due timers and re-dispatch due work; schedule SQS wake-ups for what is near."""
        self.seen(context)
        return self.run(self.sweep())

    async def sweep(self, budget_s: float = SWEEP_BUDGET_S) -> dict[str, Any]:
        """One sweeper run (see :meth:`sweeper`)."""
        engine = await self.ready()
        started = time.monotonic()
        swept = 0
        while True:
            n = await engine.tick()
            swept += n
            if n < engine.config.sweep_batch or time.monotonic() - started > budget_s:
                break
        scheduled = 0
        if engine.dispatcher is not None:
            scheduled = await schedule_upcoming(
                engine.backend, engine.clock, engine.dispatcher, self.settings.sweep_lookahead_ms
            )
        await engine.drain()
        return {"swept": swept, "scheduled": scheduled}

    # ------------------------------------------------------------------ event sources
    def events(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Deliver an event-source batch to the subscriptions of its source (partial batch
        response; a Kafka batch with failures raises, so that Lambda retries it whole)."""
        self.seen(context)
        return self.run(self._events(event))

    async def _events(self, event: dict[str, Any]) -> dict[str, Any]:
        engine = await self.ready()
        try:
            return await engine.handle_event_batch(event)
        finally:
            await engine.drain()

    # ------------------------------------------------------------------ admin
    def admin(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The admin API: HTTP events, CloudFormation custom resources, direct invocations."""
        self.seen(context)
        from infra.admin_events import handle_admin_event

        return handle_admin_event(self, event, context)

    def admin_http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Answer an HTTP event with the admin API (Restate's port-9070 API)."""
        if self._admin is None:
            from mangum import Mangum

            asyncio.set_event_loop(self.loop)
            self._admin = Mangum(self._admin_asgi, lifespan="off")
        asyncio.set_event_loop(self.loop)
        result: dict[str, Any] = self._admin(event, context)
        return result

    async def _admin_asgi(self, scope: Any, receive: Any, send: Any) -> None:
        from ingress.admin_app import create_admin_app

        engine = await self.ready()
        if self._admin_app is None:
            self._admin_app = create_admin_app(engine)
        try:
            await self._admin_app(scope, receive, send)
        finally:
            await engine.drain()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Commit a handler's checkpoint event (``{"restate_lambda_checkpoint": ...}``); answer
        ``{"status", "body"}`` (see :mod:`infra.checkpoint_events`), never raise for a bad
        event."""
        self.seen(context)
        return self.run(self._checkpoint(event))

    async def _checkpoint(self, event: dict[str, Any]) -> dict[str, Any]:
        from infra.checkpoint_events import handle_checkpoint_event

        engine = await self.ready()
        try:
            return await handle_checkpoint_event(engine, event)
        finally:
            await engine.drain()  # effects of the batch (sends, calls) leave before the freeze

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Close the engine, backend and loop (tests; a sandbox just goes away)."""
        if self._engine is not None:
            engine = self._engine
            self.run(engine.close())
            if self._owns_backend:
                self.run(engine.backend.close())
        self.loop.close()
