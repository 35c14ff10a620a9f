"""Reach handler deployments through AWS Lambda's ``Invoke`` API (Restate's Lambda envelope).

One exchange is one synchronous (``RequestResponse``) ``lambda.invoke`` of a *qualified* function
ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION_OR_ALIAS``) whose payload is the JSON
envelope of :mod:`restate_lambda.protocol.lambda_envelope` (API Gateway v1 proxy shape, body in
base64). Discovery is the same envelope with ``GET /discover``.

* **Clients.** boto3 is imported lazily (the engine never imports it) and calls run on a small
  dedicated thread pool. There is one client per ``(region, assume_role_arn)``; with a role the
  client's credentials come from STS ``AssumeRole`` and botocore refreshes them before they expire.
* **Limits.** Lambda rejects synchronous payloads over 6 MB (6,291,456 bytes). A request envelope
  over that raises :class:`LambdaPayloadTooLargeError` (``terminal``: retrying cannot help) before
  anything is sent; Lambda's own ``RequestTooLargeException`` is mapped to the same error.
* **Compression.** When the deployment advertised ``lambdaCompression: "zstd"`` (manifest v4) and
  a zstd module is importable (``compression.zstd`` on 3.14+, ``backports.zstd`` or
  ``zstandard``), request bodies over :data:`COMPRESSION_THRESHOLD` are sent zstd-compressed with
  ``content-encoding: zstd``, as restate-server does; ``accept-encoding: zstd`` is sent whenever a
  zstd module is importable, and compressed replies are decompressed. Without a zstd module
  nothing is compressed and large journals simply hit the 6 MB check.
* **Errors.** A ``FunctionError`` (the handler raised, timed out or ran out of memory) is a
  failed attempt (:class:`~invoker.transport.TransportError`, retried by the engine with its
  policy), as are throttling and network failures after botocore's own retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from invoker.exchange import Exchange, Reply, TransportError
from restate_lambda.protocol.lambda_envelope import (
    LambdaEnvelopeError,
    build_request,
    encode_envelope,
    parse_response,
)

#: Lambda's limit on a synchronous invocation's request and response payloads.
LAMBDA_SYNC_PAYLOAD_LIMIT: Final = 6 * 1024 * 1024
#: Request bodies longer than this (before base64) are zstd-compressed when the deployment
#: accepts it (restate-server's default ``request-compression-threshold``).
COMPRESSION_THRESHOLD: Final = 4 * 1024 * 1024
#: Lambda's longest function timeout; client reads wait at least this long.
MAX_FUNCTION_TIMEOUT_S: Final = 900.0


class LambdaPayloadTooLargeError(TransportError):
    """The invocation's payload exceeds Lambda's synchronous limit; retrying cannot help."""

    terminal = True
    code = 413


@dataclass(frozen=True, slots=True)
class FunctionArn:
    """A parsed Lambda function ARN."""

    partition: str
    region: str
    account: str
    name: str
    qualifier: str | None

    @property
    def unqualified(self) -> str:
        """The ARN without its version or alias."""
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.name}"

    def __str__(self) -> str:
        return self.unqualified + (f":{self.qualifier}" if self.qualifier else "")


def parse_function_arn(arn: str, *, require_qualifier: bool = True) -> FunctionArn:
    """Parse ``arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``.

    Raises:
        TransportError: not a Lambda function ARN, or (``require_qualifier``) not qualified with
            a version or alias -- like Restate, a deployment must pin the code it runs.
    """
    parts = arn.split(":")
    if (
        len(parts) not in (7, 8)
        or parts[0] != "arn"
        or parts[2] != "lambda"
        or parts[5] != "function"
        or not all(parts[1:5])
        or not parts[6]
    ):
        raise TransportError(
            f"{arn!r} is not a Lambda function ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION)"
        )
    qualifier = parts[7] if len(parts) == 8 and parts[7] else None
    if require_qualifier and qualifier is None:
        raise TransportError(
            f"Lambda ARN {arn!r} has no version: register a published version or alias "
            "(…:function:NAME:3), not the unqualified function"
        )
    return FunctionArn(parts[1], parts[3], parts[4], parts[6], qualifier)


def zstd_module() -> ModuleType | None:
    """The first importable zstd implementation (``compress``/``decompress``), or None."""
    for name in ("compression.zstd", "backports.zstd", "zstandard"):
        with contextlib.suppress(ImportError):
            import importlib

            return importlib.import_module(name)
    return None


class LambdaTransport:
    """Carries exchanges to Lambda function ARNs with boto3 ``Invoke``.

    Args:
        endpoint_url: Lambda API endpoint (tests: the local Invoke endpoint); default AWS's.
        sts_endpoint_url: STS endpoint for assume-role (tests: moto).
        external_id: ``ExternalId`` sent with every ``AssumeRole``.
        max_payload_bytes: refuse request envelopes over this (Lambda's 6 MB limit).
        compression_threshold: compress bodies over this when the deployment allows it.
        max_threads: width of the thread pool running boto3 calls.
        session: a ``boto3.Session`` to build clients from (default: a new one).
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        sts_endpoint_url: str | None = None,
        external_id: str | None = None,
        max_payload_bytes: int = LAMBDA_SYNC_PAYLOAD_LIMIT,
        compression_threshold: int = COMPRESSION_THRESHOLD,
        max_threads: int = 32,
        session: Any = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.sts_endpoint_url = sts_endpoint_url
        self.external_id = external_id
        self.max_payload_bytes = max_payload_bytes
        self.compression_threshold = compression_threshold
        self._session = session
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="lambda-invoke")
        self._zstd = zstd_module()
        #: How many ``AssumeRole`` calls were made (clients are cached per role).
        self.assume_role_calls = 0

    # ------------------------------------------------------------------ clients
    def _boto3_session(self) -> Any:
        if self._session is None:
            try:
                import boto3
            except ImportError as exc:
                raise TransportError(
                    "Lambda deployments need boto3: pip install 'restate-lambda[aws]'"
                ) from exc
            self._session = boto3.Session()
        return self._session

    def client(self, region: str, assume_role_arn: str | None = None) -> Any:
        """The cached Lambda client for ``region`` (and role); thread-safe."""
        key = (region, assume_role_arn)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = self._new_client(region, assume_role_arn)
            return found

    def _client_config(self) -> Any:
        from botocore.config import Config

        return Config(
            read_timeout=MAX_FUNCTION_TIMEOUT_S + 10,
            connect_timeout=5,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=64,
            tcp_keepalive=True,
        )

    def _new_client(self, region: str, assume_role_arn: str | None) -> Any:
        session = self._boto3_session()
        if assume_role_arn is not None:
            session = self._assumed_session(region, assume_role_arn)
        return session.client(
            "lambda",
            region_name=region,
            endpoint_url=self.endpoint_url,
            config=self._client_config(),
        )

    def _assumed_session(self, region: str, role_arn: str) -> Any:
        """A boto3 session whose credentials come from ``AssumeRole`` and refresh themselves."""
        import boto3
        from botocore.credentials import RefreshableCredentials
        from botocore.session import get_session

        sts = self._boto3_session().client(
            "sts", region_name=region, endpoint_url=self.sts_endpoint_url
        )

        def fetch() -> dict[str, str]:
            kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": "restate-lambda"}
            if self.external_id:
                kwargs["ExternalId"] = self.external_id
            creds = sts.assume_role(**kwargs)["Credentials"]
            self.assume_role_calls += 1
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        core = get_session()
        core._credentials = credentials
        return boto3.Session(botocore_session=core, region_name=region)

    # ------------------------------------------------------------------ exchange
    async def exchange(self, address: str, request: Exchange) -> Reply:
        """Invoke the function at ``address`` with ``request`` in Restate's Lambda envelope."""
        arn = parse_function_arn(address)
        payload = self.encode(request)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._pool, self._invoke, arn, request.assume_role_arn, payload)
        try:
            raw = await asyncio.wait_for(call, request.timeout_s)
        except TimeoutError as exc:
            raise TransportError(
                f"Lambda {arn} did not answer within {request.timeout_s:.0f} s"
            ) from exc
        return self.decode(arn, raw, request.max_response_bytes)

    def encode(self, request: Exchange) -> bytes:
        """The ``Invoke`` payload of ``request``; raises if Lambda would refuse its size."""
        headers = dict(request.headers)
        body = request.body
        if self._zstd is not None:
            headers["accept-encoding"] = "zstd"
            if request.compression == "zstd" and len(body) > self.compression_threshold:
                body = bytes(self._zstd.compress(body))
                headers["content-encoding"] = "zstd"
        payload = encode_envelope(build_request(request.path, body, headers, request.method))
        if len(payload) > self.max_payload_bytes:
            hint = (
                ""
                if request.compression == "zstd" and self._zstd is not None
                else " (zstd compression was not available for this deployment)"
            )
            raise LambdaPayloadTooLargeError(
                f"the Lambda request for {request.path} is {len(payload)} bytes, over Lambda's "
                f"synchronous payload limit of {self.max_payload_bytes} bytes{hint}: the "
                "invocation's input and journal are too large to send to a Lambda deployment"
            )
        return payload

    def _invoke(self, arn: FunctionArn, role: str | None, payload: bytes) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(arn.region, role)
        kwargs: dict[str, Any] = {
            "FunctionName": arn.unqualified,
            "InvocationType": "RequestResponse",
            "Payload": payload,
        }
        if arn.qualifier:
            kwargs["Qualifier"] = arn.qualifier
        try:
            response = client.invoke(**kwargs)
            body = response["Payload"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = str(exc.response.get("Error", {}).get("Message", exc))
            if code in ("RequestTooLargeException", "RequestEntityTooLargeException"):
                raise LambdaPayloadTooLargeError(
                    f"Lambda refused the {len(payload)}-byte request for {arn}: {message}"
                ) from exc
            raise TransportError(f"Lambda Invoke of {arn} failed: {code}: {message}") from exc
        except BotoCoreError as exc:
            raise TransportError(f"Lambda Invoke of {arn} failed: {exc}") from exc
        return {"error": response.get("FunctionError"), "payload": body}

    def decode(
        self, arn: FunctionArn | str, raw: dict[str, Any], max_bytes: int = 1 << 62
    ) -> Reply:
        """Turn ``Invoke``'s answer into a :class:`Reply` (a function error raises)."""
        payload: bytes = raw["payload"]
        if raw.get("error"):
            raise TransportError(f"Lambda {arn} failed ({raw['error']}): {_error_text(payload)}")
        try:
            response = parse_response(payload)
        except LambdaEnvelopeError as exc:
            raise TransportError(f"Lambda {arn} answered with an invalid envelope: {exc}") from exc
        body = response.body
        if "zstd" in response.headers.get("content-encoding", ""):
            if self._zstd is None:
                raise TransportError(f"Lambda {arn} answered zstd but no zstd module is installed")
            body = bytes(self._zstd.decompress(body))
            response.headers.pop("content-encoding", None)
        if len(body) > max_bytes:
            raise TransportError(
                f"Lambda {arn} answered {len(body)} bytes, over the limit of {max_bytes} bytes"
            )
        return Reply(status=response.status, headers=response.headers, body=body)

    async def close(self) -> None:
        """Close the clients and the thread pool."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _error_text(payload: bytes) -> str:
    """``errorType: errorMessage`` of a Lambda error payload (or its first bytes)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return payload[:300].decode("utf-8", "replace")
    if isinstance(data, dict):
        return f"{data.get('errorType', 'Error')}: {data.get('errorMessage', '')}"
    return str(data)[:300]
