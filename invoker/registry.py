"""The deployment and service registry: discovery, registration, lookup, admin views."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import msgspec

from backends.api import Backend, ConflictError, Put
from invoker import keys
from invoker.api import BadRequestError, ConflictingRequestError, NotFoundError
from invoker.registry_model import (
    DeploymentInfo,
    HandlerInfo,
    ManifestError,
    ServiceInfo,
    services_from_manifest,
)
from invoker.transport import Exchange, TransportError, Transports
from restate_lambda.clock import Clock
from restate_lambda.protocol.ids import DeploymentId

log = logging.getLogger("restate_lambda.registry")

MIN_PROTOCOL = 5
MAX_PROTOCOL = 6
_ACCEPT_MANIFEST = ", ".join(
    f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (4, 3, 2)
)

_dep_decoder = msgspec.msgpack.Decoder(DeploymentInfo)
_svc_decoder = msgspec.msgpack.Decoder(ServiceInfo)
_encoder = msgspec.msgpack.Encoder()


class Registry:
    """Caches deployments and services in memory; the backend is the source of truth."""

    def __init__(self, backend: Backend, clock: Clock, transports: Transports) -> None:
        self._backend = backend
        self._clock = clock
        self._transports = transports
        self._services: dict[str, ServiceInfo] = {}
        self._deployments: dict[str, DeploymentInfo] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._loaded_ms = -1
        #: Version of the registry's change counter when this cache was loaded (0: none yet).
        self._generation = -1

    async def load(self) -> None:
        """(Re)load every deployment and service from the backend."""
        generation = await self._backend.get(keys.REGISTRY, keys.REGISTRY_GENERATION)
        deployments = await self._backend.query(keys.DEPLOYMENTS)
        services = await self._backend.query(keys.SERVICES)
        self._deployments = {i.sk: _dep_decoder.decode(i.value) for i in deployments}
        self._services = {i.sk: _svc_decoder.decode(i.value) for i in services}
        self._versions = {(i.pk, i.sk): i.version for i in [*deployments, *services]}
        self._generation = generation.version if generation is not None else 0
        self._loaded_ms = self._clock.now_ms()

    async def refresh_if_stale(self, max_age_ms: int = 2000) -> bool:
        """Reload when the cache is older than ``max_age_ms`` and the registry changed since;
        True when it reloaded.

        Every change bumps a counter item (one read tells whether anything changed), so
        deployments registered through another engine on the same store reach this one.
        """
        now = self._clock.now_ms()
        if now - self._loaded_ms < max_age_ms and self._loaded_ms >= 0:
            return False
        generation = await self._backend.get(keys.REGISTRY, keys.REGISTRY_GENERATION)
        current = generation.version if generation is not None else 0
        if current != self._generation:
            await self.load()
            return True
        self._loaded_ms = now
        return False

    def _bump(self) -> Put:
        """The write that bumps the registry's change counter (in every registry batch)."""
        return Put(
            keys.REGISTRY,
            keys.REGISTRY_GENERATION,
            b"",
            expect=self._generation if self._generation > 0 else 0,
        )

    # --- lookups -----------------------------------------------------------------------
    def service(self, name: str) -> ServiceInfo | None:
        """The current revision of a service."""
        return self._services.get(name)

    def handler(self, service: str, handler: str) -> tuple[ServiceInfo, HandlerInfo] | None:
        """A service and one of its handlers."""
        svc = self._services.get(service)
        if svc is None:
            return None
        h = svc.handlers.get(handler)
        return (svc, h) if h is not None else None

    def deployment(self, deployment_id: str) -> DeploymentInfo | None:
        """A deployment by id."""
        return self._deployments.get(deployment_id)

    def services(self) -> list[ServiceInfo]:
        """All services, sorted by name."""
        return [self._services[k] for k in sorted(self._services)]

    def deployments(self) -> list[DeploymentInfo]:
        """All deployments, oldest first."""
        return sorted(self._deployments.values(), key=lambda d: (d.created_ms, d.id))

    # --- registration ------------------------------------------------------------------
    async def discover(
        self,
        address: str,
        headers: dict[str, str],
        assume_role_arn: str | None = None,
        *,
        http2: bool = False,
    ) -> tuple[dict[str, Any], str | None]:
        """Fetch and decode the manifest of the endpoint at ``address`` (an HTTP URL over
        HTTP/2 cleartext with ``http2``, as restate-server does unless told ``use_http_11``)."""
        transport = self._transports.for_address(address, http2=http2)
        request = Exchange(
            "GET",
            "/discover",
            {**headers, "accept": _ACCEPT_MANIFEST},
            timeout_s=30.0,
            assume_role_arn=assume_role_arn,
        )
        try:
            reply = await transport.exchange(address, request)
        except TransportError as exc:
            hint = (
                " (reached over HTTP/2 cleartext: a server that speaks only HTTP/1.1 must be "
                "registered with use_http_11, --use-http1.1 in the CLI)"
                if http2
                else ""
            )
            raise BadRequestError(f"cannot reach deployment {address}: {exc}{hint}") from exc
        if reply.status != 200:
            snippet = reply.body[:200].decode("utf-8", "replace")
            raise BadRequestError(f"discovery at {address} answered HTTP {reply.status}: {snippet}")
        try:
            manifest = json.loads(reply.body)
        except ValueError as exc:
            raise BadRequestError(f"discovery at {address} returned invalid JSON") from exc
        if not isinstance(manifest, dict):
            raise BadRequestError("discovery manifest is not a JSON object")
        return manifest, reply.headers.get("x-restate-server")

    async def register(
        self,
        address: str,
        *,
        is_arn: bool,
        additional_headers: dict[str, str],
        use_http_11: bool,
        force: bool,
        dry_run: bool,
        assume_role_arn: str | None,
    ) -> tuple[DeploymentInfo, bool]:
        """Discover ``address`` and store it as a deployment; return it and whether it is new."""
        check_additional_headers(additional_headers)
        await self.load()
        http2 = not is_arn and not use_http_11 and address.startswith(("http://", "https://"))
        manifest, sdk = await self.discover(
            address, additional_headers, assume_role_arn, http2=http2
        )
        lo = int(manifest.get("minProtocolVersion", 0) or 0)
        hi = int(manifest.get("maxProtocolVersion", 0) or 0)
        if hi < MIN_PROTOCOL or lo > MAX_PROTOCOL:
            raise BadRequestError(
                f"deployment supports service protocol {lo}..{hi}; this runtime speaks "
                f"{MIN_PROTOCOL}..{MAX_PROTOCOL}"
            )
        mode = str(manifest.get("protocolMode", "REQUEST_RESPONSE"))
        if mode == "BIDI_STREAM" and (is_arn or use_http_11):
            raise BadRequestError(
                "the deployment declares BIDI_STREAM but is reached over HTTP/1.1 or Lambda; "
                "serve it in request-response mode"
            )
        existing = next(
            (d for d in self._deployments.values() if (d.arn if is_arn else d.uri) == address),
            None,
        )
        raw = json.dumps(manifest, sort_keys=True).encode()
        if existing is not None and existing.manifest == raw:
            return existing, False
        if existing is not None and not force:
            raise ConflictingRequestError(
                f"deployment {existing.id} already exists for {address} with a different "
                "manifest; use force to overwrite it"
            )
        dep_id = existing.id if existing is not None else str(DeploymentId.new())
        try:
            services = services_from_manifest(manifest, dep_id)
        except ManifestError as exc:
            raise BadRequestError(f"invalid discovery manifest: {exc}") from exc
        if not services:
            raise BadRequestError("the deployment exposes no services")
        for svc in services:
            old = self._services.get(svc.name)
            if old is not None and old.kind != svc.kind and not force:
                raise ConflictingRequestError(
                    f"service {svc.name} changes type from {old.kind} to {svc.kind}; "
                    "use force to allow it"
                )
        services = [
            msgspec.structs.replace(
                s,
                revision=(self._services[s.name].revision + 1) if s.name in self._services else 1,
            )
            for s in services
        ]
        info = DeploymentInfo(
            id=dep_id,
            uri=None if is_arn else address,
            arn=address if is_arn else None,
            assume_role_arn=assume_role_arn,
            additional_headers=additional_headers,
            use_http_11=use_http_11,
            protocol_mode=mode,
            min_protocol_version=lo,
            max_protocol_version=hi,
            sdk_version=sdk,
            lambda_compression=manifest.get("lambdaCompression"),
            created_ms=existing.created_ms if existing else self._clock.now_ms(),
            services=services,
            manifest=raw,
        )
        if dry_run:
            return info, True
        ops = [
            self._bump(),
            Put(
                keys.DEPLOYMENTS,
                dep_id,
                _encoder.encode(info),
                expect=self._versions.get((keys.DEPLOYMENTS, dep_id), 0),
            ),
        ]
        for svc in services:
            ops.append(
                Put(
                    keys.SERVICES,
                    svc.name,
                    _encoder.encode(svc),
                    expect=self._versions.get((keys.SERVICES, svc.name), 0),
                )
            )
        try:
            await self._backend.write(ops)
        except ConflictError as exc:
            raise ConflictingRequestError(
                "the registry changed concurrently; retry the registration"
            ) from exc
        await self.load()
        log.info(
            "registered deployment %s at %s: %s",
            dep_id,
            address,
            ", ".join(s.name for s in services),
        )
        return info, existing is None

    async def remove(self, deployment_id: str, force: bool) -> None:
        """Remove a deployment that no longer serves any service (or any, with force)."""
        await self.load()
        dep = self._deployments.get(deployment_id)
        if dep is None:
            raise NotFoundError(f"deployment {deployment_id} not found")
        serving = [s.name for s in self._services.values() if s.deployment_id == deployment_id]
        if serving and not force:
            raise ConflictingRequestError(
                f"deployment {deployment_id} still serves {', '.join(serving)}; use force"
            )
        from backends.api import Delete

        ops: list[Any] = [
            self._bump(),
            Delete(
                keys.DEPLOYMENTS,
                deployment_id,
                expect=self._versions[(keys.DEPLOYMENTS, deployment_id)],
            ),
        ]
        for name in serving:
            ops.append(Delete(keys.SERVICES, name, expect=self._versions[(keys.SERVICES, name)]))
        await self._backend.write(ops)
        await self.load()


#: An HTTP field name (RFC 9110 ``token``).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What a field value may not hold: control characters but HTAB (RFC 9110), and non-ASCII
#: characters (restate-server takes visible ASCII, space and HTAB only, as here).
_BAD_VALUE_CHAR = re.compile(r"[^\t\x20-\x7e]")


def check_additional_headers(headers: dict[str, str]) -> None:
    """400 unless every header a deployment is registered with can go on the wire as given:
    the HTTP clients send them without checking again (a CR or LF in a value would otherwise
    inject headers into every request to the deployment)."""
    for name, value in headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise BadRequestError(f"additional header name {name[:100]!r} is not a valid HTTP name")
        if _BAD_VALUE_CHAR.search(value) or value != value.strip(" \t"):
            raise BadRequestError(
                f"the value of additional header {name!r} holds control or non-ASCII "
                "characters, or leading or trailing whitespace"
            )
