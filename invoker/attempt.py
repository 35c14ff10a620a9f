"""One attempt: send the journal to the deployment, read its answer, process the messages.

Each attempt offers the handler the checkpoint channel (:mod:`invoker.checkpoints`): in process
through the ASGI scope, elsewhere through headers naming the attempt's token and the runtime's
checkpoint URL (when one is configured).

Request-response mode (HTTP/1.1, in process, Lambda): the request carries ``Start`` plus the
whole journal; the response carries the attempt's commands and ends with ``End``,
``Suspension`` or ``Error``. Every transport bounds the exchange by the handler's attempt
timeout, which the lease outlives (:class:`invoker.policies.Leases`), so an attempt never runs
past the lease of the engine that started it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from invoker import records as rec
from invoker import tracing
from invoker.config import EngineConfig
from invoker.exchange import Reply
from invoker.ids import invocation_id_bytes
from invoker.policies import Policies
from invoker.ports import Claimed
from invoker.processing import (
    AttemptError,
    AttemptInput,
    Entry,
    Processed,
    ProtocolViolation,
    process,
    state_key_bytes,
)
from invoker.registry import Registry
from invoker.registry_model import DeploymentInfo
from invoker.transport import Exchange, TransportError, Transports
from restate_lambda.checkpoint import HEADER_JOURNAL_INDEX, HEADER_TOKEN, HEADER_URL, Checkpointer
from restate_lambda.clock import Clock
from restate_lambda.protocol.errors import ProtocolError
from restate_lambda.protocol.framing import decode_all, encode_raw
from restate_lambda.protocol.messages import MessageType as T
from restate_lambda.protocol.messages import pb

log = logging.getLogger("restate_lambda.attempt")


@dataclass(frozen=True, slots=True)
class Prepared:
    """An attempt's request, where it goes, and how (HTTP/2, bidirectional)."""

    address: str
    exchange: Exchange
    http2: bool = False
    bidi: bool = False


@dataclass(frozen=True, slots=True)
class Terminal:
    """The attempt cannot succeed however often it is retried: fail the invocation."""

    failure: rec.Failure


class Attempts:
    """Runs attempts against deployments."""

    def __init__(
        self,
        registry: Registry,
        transports: Transports,
        policies: Policies,
        clock: Clock,
        config: EngineConfig,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self._registry = registry
        self._transports = transports
        self._policies = policies
        self._clock = clock
        self._config = config
        #: Offered in process (ASGI deployments); other deployments get ``checkpoint_url``.
        self._checkpointer = checkpointer
        self._checkpoint_url = config.checkpoint_url

    async def prepare(self, st: Claimed, state: dict[str, bytes]) -> Prepared | AttemptError:
        """The request of one attempt of ``st`` and the deployment it goes to."""
        inv = st.inv
        dep = await self._deployment(inv)
        if isinstance(dep, AttemptError):
            return dep
        if inv.protocol_version is None:
            inv.protocol_version = min(dep.max_protocol_version, 6)
        headers = {
            "content-type": f"application/vnd.restate.invocation.v{inv.protocol_version}",
            "accept": f"application/vnd.restate.invocation.v{inv.protocol_version}",
            "x-restate-invocation-id": inv.id,
            **dep.additional_headers,
        }
        if inv.key is not None:
            headers["x-restate-service-key"] = quote(inv.key, safe="")
        if (tracer := tracing.current()) is not None:
            tracer.inject(headers)
        address = dep.arn or dep.uri or ""
        bidi = dep.protocol_mode == "BIDI_STREAM"
        offer = None
        if inv.attempt_token is not None and not bidi:
            if address.startswith("asgi://"):
                offer = (self._checkpointer, inv.attempt_token)
            elif self._checkpoint_url is not None:
                headers[HEADER_TOKEN] = inv.attempt_token
                headers[HEADER_URL] = self._checkpoint_url
        exchange = Exchange(
            "POST",
            f"/invoke/{inv.service}/{inv.handler}",
            headers,
            self._start_body(inv, st.entries, state),
            timeout_s=self._policies.attempt_timeout_s(inv),
            assume_role_arn=dep.assume_role_arn,
            compression=dep.lambda_compression,
            max_response_bytes=self._config.max_response_bytes,
            checkpoint=offer,
        )
        http2 = dep.uri is not None and not dep.use_http_11 and dep.uri.startswith("http")
        return Prepared(address, exchange, http2=http2, bidi=bidi and http2)

    async def exchange(self, st: Claimed, prepared: Prepared) -> Reply | AttemptError | Terminal:
        """Send a prepared request-response attempt; the deployment's reply."""
        address = prepared.address
        transport = self._transports.for_address(address, http2=prepared.http2)
        try:
            return await transport.exchange(address, prepared.exchange)
        except TransportError as exc:
            if exc.terminal:  # e.g. over Lambda's payload limit: retrying cannot help
                log.warning("invocation %s failed terminally: %s", st.inv.id, exc)
                return Terminal(rec.Failure(exc.code, str(exc)))
            return AttemptError(exc.code, str(exc))

    @staticmethod
    def journal_moved(st: Claimed, reply: Reply) -> bool:
        """Whether checkpoints of this attempt appended to the journal (the reply's entries
        start later than the journal the attempt started from)."""
        index = reply.headers.get(HEADER_JOURNAL_INDEX)
        return index is not None and index.isdigit() and int(index) != st.inv.journal_len

    def parse(self, st: Claimed, reply: Reply, state: dict[str, bytes]) -> Processed | AttemptError:
        """The attempt's outcome from the deployment's reply."""
        inv = st.inv
        frames = _reply_frames(inv, reply.status, reply.headers, reply.body)
        if isinstance(frames, AttemptError):
            return frames
        try:
            return process(
                frames,
                AttemptInput(
                    invocation_id=inv.id,
                    service=inv.service,
                    handler=inv.handler,
                    key=inv.key,
                    service_kind=inv.service_kind,
                    can_write_state=rec.writes_state(inv),
                    journal_len=inv.journal_len,
                    commands_len=inv.commands_len,
                    state=state,
                    now_ms=self._clock.now_ms(),
                ),
            )
        except ProtocolViolation as exc:
            log.warning("invocation %s: protocol violation: %s", inv.id, exc)
            return AttemptError(571, f"protocol violation: {exc}")

    async def _deployment(self, inv: rec.Invocation) -> DeploymentInfo | AttemptError:
        """The deployment ``inv`` is pinned to (pinning it on its first attempt)."""
        if inv.deployment_id is None:
            svc = self._registry.service(inv.service)
            if svc is None:
                await self._registry.refresh_if_stale(0)
                svc = self._registry.service(inv.service)
            if svc is None:
                return AttemptError(404, f"service {inv.service} is not registered")
            inv.deployment_id = svc.deployment_id
        dep = self._registry.deployment(inv.deployment_id)
        if dep is None:
            await self._registry.refresh_if_stale(0)
            dep = self._registry.deployment(inv.deployment_id)
        if dep is None:
            return AttemptError(503, f"deployment {inv.deployment_id} is gone")
        return dep

    def _start_body(
        self, inv: rec.Invocation, entries: list[Entry], state: dict[str, bytes]
    ) -> bytes:
        start = pb().StartMessage(
            id=invocation_id_bytes(inv.id),
            debug_id=inv.id,
            known_entries=len(entries),
            partial_state=False,
            key=inv.key or "",
            retry_count_since_last_stored_entry=inv.retry_since_stored,
            duration_since_last_stored_entry=max(0, self._clock.now_ms() - inv.last_stored_ms),
        )
        if (inv.protocol_version or 5) >= 6:
            start.random_seed = inv.random_seed
        for k, v in state.items():
            start.state_map.add(key=state_key_bytes(k), value=v)
        parts = [encode_raw(int(T.START), start.SerializeToString())]
        parts.extend(encode_raw(ty, payload) for ty, payload in entries)
        return b"".join(parts)


def _reply_frames(
    inv: rec.Invocation, status: int, headers: dict[str, str], body: bytes
) -> list[tuple[int, bytes]] | AttemptError:
    if status != 200:
        snippet = body[:300].decode("utf-8", "replace")
        return AttemptError(
            status if status >= 400 else 500,
            f"deployment answered HTTP {status} for {inv.service}/{inv.handler}: {snippet}",
        )
    ct = headers.get("content-type", "")
    if not ct.startswith("application/vnd.restate.invocation.v"):
        return AttemptError(571, f"deployment answered with content-type {ct!r}")
    try:
        return [(f.type, f.payload) for f in decode_all(body)]
    except ProtocolError as exc:
        return AttemptError(571, f"malformed response stream: {exc}")
