"""A dict-backed :class:`invoker.api.EngineApi` for ingress/admin tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from backends.api import Item
from invoker import keys
from invoker.api import (
    BadRequestError,
    ConflictingRequestError,
    HandlerInput,
    InvokeRequest,
    NotFoundError,
    NotReadyError,
    Outcome,
    SendResult,
    ServiceType,
    Target,
)
from invoker.introspection.source import IntrospectionSource
from invoker.records import StateRecord, encode
from invoker.registry_model import DeploymentInfo, ServiceInfo

# Well-formed Restate ids (inv_1 + 33 base62 characters).
INV_A = "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz"
INV_B = "inv_17qyBG9GnWFP0elFqjEI77dzmalmdCezDU"
INV_RUNNING = "inv_14omfrcipDKK4XfJ05Y6Fq6ncsmMIsofp1"
INV_UNKNOWN = "inv_1aag51El8e1426H9MXYdKPWeiPTDfPG923"
#: completed invocations of a private handler (Greeter/secret) and a private service (Hidden)
INV_PRIVATE_HANDLER = "inv_1iRipX1PtSMh5zKQFcQEFV5TAdRdgubKRH"
INV_PRIVATE_SERVICE = "inv_16twFBfRV2yZ5t6O4VPetPw1PmR7aLNMbL"
DEPLOYMENT_ID = "dp_11iCWsSBsADZrgzCuKAfc5j"
JSON_IN = HandlerInput()
NO_INPUT = HandlerInput(accepts_body=False)


@dataclass
class FakeHandler:
    """A registered handler: its input rules and what calling it yields."""

    input: HandlerInput = JSON_IN
    public: bool = True
    result: bytes | None = None  # None: echo the input
    failure: tuple[int, str] | None = None


@dataclass
class FakeService:
    """A registered service."""

    ty: ServiceType
    handlers: dict[str, FakeHandler] = field(default_factory=dict)
    public: bool = True


class FakeEngine:
    """Records requests and answers from dicts; no durability, no MagicMock."""

    def __init__(self) -> None:
        self.services: dict[str, FakeService] = {
            "Greeter": FakeService(
                "Service",
                {
                    "greet": FakeHandler(),
                    "noin": FakeHandler(input=NO_INPUT, result=b""),
                    "fail": FakeHandler(failure=(418, "nope")),
                    "secret": FakeHandler(public=False),
                    "boom": FakeHandler(result=b"boom"),
                },
            ),
            "Counter": FakeService("VirtualObject", {"add": FakeHandler()}),
            "Wf": FakeService("Workflow", {"run": FakeHandler()}),
            "Hidden": FakeService("Service", {"run": FakeHandler()}, public=False),
            "HiddenWf": FakeService("Workflow", {"run": FakeHandler()}, public=False),
        }
        self.outcomes: dict[str, Outcome] = {
            INV_A: Outcome(
                INV_A,
                ok=True,
                value=b'"done"',
                content_type="application/json",
                idempotency_expires_ms=1_790_000_000_123,
            ),
            INV_B: Outcome(
                INV_B,
                ok=False,
                failure_code=418,
                failure_message="teapot",
                failure_metadata={"a": "b"},
            ),
        }
        for private in (INV_PRIVATE_HANDLER, INV_PRIVATE_SERVICE):
            self.outcomes[private] = Outcome(private, ok=True, value=b'"private"')
        self.targets: dict[str, Target] = {
            INV_A: Target("Wf", "run", key="w1"),
            INV_B: Target("Greeter", "fail"),
            INV_RUNNING: Target("Greeter", "greet"),
            INV_PRIVATE_HANDLER: Target("Greeter", "secret"),
            INV_PRIVATE_SERVICE: Target("Hidden", "run"),
        }
        self.running: set[str] = {INV_RUNNING}
        self.workflows: dict[tuple[str, str], str] = {
            ("Wf", "w1"): INV_A,
            ("HiddenWf", "h1"): INV_PRIVATE_SERVICE,
        }
        self.idempotent: dict[tuple[Target, str], str] = {}
        self.calls: list[InvokeRequest] = []
        self.sends: list[InvokeRequest] = []
        self.awakeables: dict[str, bytes | str] = {}
        self.managed: list[tuple[str, str]] = []
        self.state: dict[tuple[str, str], dict[str, bytes]] = {("Counter", "k1"): {"count": b"42"}}
        self.deployments: dict[str, dict[str, Any]] = {
            DEPLOYMENT_ID: {
                "id": DEPLOYMENT_ID,
                "uri": "http://127.0.0.1:9080/",
                "created_at": 1_764_077_034_107,
                "min_protocol_version": 5,
                "max_protocol_version": 5,
                "sdk_version": "restate-sdk-python/1.2.0",
                "services": [self._service_dict(n) for n in self.services],
            }
        }
        self.next_id = 0
        self.raise_on_call: Exception | None = None

    # --- helpers -----------------------------------------------------------------------
    def _service(self, name: str) -> FakeService:
        service = self.services.get(name)
        if service is None:
            raise NotFoundError(
                f"service '{name}' not found, make sure to register the service before calling it."
            )
        return service

    def _new_id(self) -> str:
        self.next_id += 1
        return f"inv_1{self.next_id:033d}"

    def _service_dict(self, name: str) -> dict[str, Any]:
        service = self.services[name]
        return {
            "name": name,
            "ty": service.ty,
            "public": service.public,
            "deployment_id": DEPLOYMENT_ID,
            "handlers": [
                {
                    "name": h,
                    "public": fh.public,
                    "input_description": "none" if not fh.input.accepts_body else "JSON value",
                    "output_description": "JSON value",
                }
                for h, fh in service.handlers.items()
            ],
        }

    # --- ingress -----------------------------------------------------------------------
    async def call(self, request: InvokeRequest) -> Outcome:
        """Run the fake handler synchronously."""
        if self.raise_on_call is not None:
            raise self.raise_on_call
        self.calls.append(request)
        handler = self.services[request.target.service].handlers[request.target.handler]
        if request.target.service == "Wf" and (("Wf", request.target.key or "") in self.workflows):
            invocation_id = self.workflows[("Wf", request.target.key or "")]
            return Outcome(
                invocation_id,
                ok=False,
                failure_code=409,
                failure_message="the workflow method was already invoked",
            )
        invocation_id = self._new_id()
        if handler.failure is not None:
            code, message = handler.failure
            return Outcome(invocation_id, ok=False, failure_code=code, failure_message=message)
        value = request.body if handler.result is None else handler.result
        return Outcome(
            invocation_id,
            ok=True,
            value=value,
            content_type="application/json" if value else None,
            idempotency_expires_ms=1_790_000_000_000 if request.idempotency_key else None,
        )

    async def send(self, request: InvokeRequest) -> SendResult:
        """Accept (or re-accept an idempotent) one-way invocation."""
        self.sends.append(request)
        if request.idempotency_key is not None:
            key = (request.target, request.idempotency_key)
            if key in self.idempotent:
                return SendResult(self.idempotent[key], previously_accepted=True)
            self.idempotent[key] = self._new_id()
            return SendResult(self.idempotent[key], previously_accepted=False)
        execution = 1_764_077_061_123 if request.delay_ms is not None else None
        return SendResult(self._new_id(), previously_accepted=False, execution_time_ms=execution)

    async def attach(self, invocation_id: str) -> Outcome:
        """Completed outcome, or 404."""
        if invocation_id in self.outcomes:
            return self.outcomes[invocation_id]
        raise NotFoundError("not found")

    async def output(self, invocation_id: str) -> Outcome:
        """Completed outcome, 470 while running, 404 otherwise."""
        if invocation_id in self.running:
            raise NotReadyError("the invocation exists but has not completed yet")
        if invocation_id in self.outcomes:
            return self.outcomes[invocation_id]
        raise NotFoundError("invocation not found")

    def workflow_invocation_id(self, workflow: str, key: str) -> str:
        """Known workflow runs map to fixed ids; others to an unknown id."""
        return self.workflows.get((workflow, key), INV_UNKNOWN)

    def idempotent_invocation_id(self, target: Target, idempotency_key: str) -> str:
        """Idempotency key ``done`` maps to the completed INV_A."""
        if idempotency_key == "done":
            return INV_A
        return self.idempotent.get((target, idempotency_key), INV_UNKNOWN)

    async def resolve_awakeable(self, awakeable_id: str, value: bytes) -> None:
        """Record the completion."""
        self.awakeables[awakeable_id] = value

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Record the failure."""
        self.awakeables[awakeable_id] = reason

    def is_ingress_reachable(self, target: Target) -> None:
        """404 for unknown service/handler, 400 for private handlers or a misplaced key."""
        service = self._service(target.service)
        handler = service.handlers.get(target.handler)
        if handler is None:
            raise NotFoundError(
                f"the service '{target.service}' exists, but the handler '{target.handler}' "
                "was not found"
            )
        if not handler.public or not service.public:
            raise BadRequestError("the invoked service is not public")
        if (target.key is None) != (service.ty == "Service"):
            raise BadRequestError("bad path")

    def is_ingress_private(self, service: str, handler: str | None = None) -> bool:
        """Private service, or private handler of it; False when unknown."""
        fake = self.services.get(service)
        if fake is None:
            return False
        if not fake.public:
            return True
        entry = fake.handlers.get(handler) if handler is not None else None
        return entry is not None and not entry.public

    async def invocation_target(self, invocation_id: str) -> Target | None:
        """The recorded target of a known invocation."""
        return self.targets.get(invocation_id)

    async def checkpoint(
        self, invocation_id: str, token: str, journal_index: int, frames: bytes
    ) -> bytes:
        """The fake engine runs no attempts: every checkpoint is fenced off."""
        raise ConflictingRequestError(f"no attempt of {invocation_id} is running")

    async def refresh_registry(self) -> bool:
        """The fake registry never changes behind the fake's back."""
        return False

    def service_type(self, service: str) -> ServiceType:
        """The fake service's type."""
        return self._service(service).ty

    def handler_input(self, target: Target) -> HandlerInput:
        """The fake handler's input rules."""
        return self._service(target.service).handlers[target.handler].input

    # --- admin -------------------------------------------------------------------------
    async def register_deployment(
        self,
        uri: str | None = None,
        arn: str | None = None,
        *,
        additional_headers: dict[str, str] | None = None,
        use_http_11: bool = False,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
        assume_role_arn: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Known uri: (existing, False); ``http://conflict`` → 409; else a new deployment."""
        if uri == "http://conflict":
            raise ConflictingRequestError("the deployment conflicts with an existing one")
        for deployment in self.deployments.values():
            if uri is not None and deployment.get("uri") == uri:
                return deployment, False
        deployment = {
            "id": "dp_14LsPzWsH6uM2yLhvdsWFrR",
            "arn": arn,
            "uri": uri,
            "assume_role_arn": assume_role_arn,
            "additional_headers": additional_headers,
            "created_at": 0,
            "services": [self._service_dict("Greeter")],
        }
        if not dry_run:
            self.deployments[deployment["id"]] = deployment
        return deployment, True

    async def list_deployments(self) -> list[dict[str, Any]]:
        """All deployments."""
        return list(self.deployments.values())

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """One deployment or 404."""
        if deployment_id not in self.deployments:
            raise NotFoundError(f"The requested deployment '{deployment_id}' does not exist")
        return self.deployments[deployment_id]

    async def remove_deployment(self, deployment_id: str, force: bool = False) -> None:
        """Forget a deployment."""
        await self.get_deployment(deployment_id)
        del self.deployments[deployment_id]

    async def list_services(self) -> list[dict[str, Any]]:
        """All services."""
        return [self._service_dict(n) for n in self.services]

    async def get_service(self, name: str) -> dict[str, Any]:
        """One service or 404."""
        if name not in self.services:
            raise NotFoundError(f"The requested service '{name}' does not exist")
        return self._service_dict(name)

    async def manage_invocation(
        self, invocation_id: str, action: Literal["cancel", "kill", "purge", "pause", "resume"]
    ) -> None:
        """Record the action; 404 for unknown invocations."""
        if invocation_id not in self.outcomes and invocation_id not in self.running:
            raise NotFoundError(f"The requested invocation '{invocation_id}' does not exist")
        self.managed.append((invocation_id, action))

    async def list_invocations(
        self, *, include_completed: bool = True, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Not used by the HTTP layer."""
        return []

    async def describe_invocation(self, invocation_id: str) -> dict[str, Any]:
        """Not used by the HTTP layer."""
        raise NotFoundError(invocation_id)

    async def get_state(self, service: str, key: str) -> dict[str, bytes]:
        """The fake K/V state."""
        return dict(self.state.get((service, key), {}))

    def introspection(self) -> IntrospectionSource:
        """SQL over the fake state (``state`` table); the other system tables are empty."""
        return IntrospectionSource(_StateStore(self.state), _EmptyRegistry())  # type: ignore[arg-type]

    async def modify_state(
        self, service: str, key: str, new_state: dict[str, bytes], version: str | None = None
    ) -> None:
        """Replace the fake K/V state (404 for an unknown service)."""
        if service not in self.services:
            raise NotFoundError(f"service '{service}' not found")
        self.state[(service, key)] = dict(new_state)


class _EmptyRegistry:
    """A registry with nothing registered (for :meth:`FakeEngine.introspection`)."""

    async def refresh_if_stale(self, max_age_ms: int = 2000) -> None:
        """Nothing to reload."""

    def services(self) -> list[ServiceInfo]:
        """No services."""
        return []

    def deployments(self) -> list[DeploymentInfo]:
        """No deployments."""
        return []


class _StateStore:
    """The reads :class:`IntrospectionSource` makes, over :attr:`FakeEngine.state`."""

    def __init__(self, state: dict[tuple[str, str], dict[str, bytes]]) -> None:
        self._items = {
            keys.obj(svc, key): Item(keys.obj(svc, key), keys.STATE, encode(StateRecord(e)), 1)
            for (svc, key), e in state.items()
        }

    async def get(self, pk: str, sk: str) -> Item | None:
        item = self._items.get(pk)
        return item if item is not None and item.sk == sk else None

    async def query(self, pk: str, prefix: str = "", **_: Any) -> list[Item]:
        item = self._items.get(pk)
        return [item] if item is not None and item.sk.startswith(prefix) else []

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        found = [i for pk, i in sorted(self._items.items()) if pk.startswith(pk_prefix)]
        return [i for i in found if i.sk == sk][:limit]
