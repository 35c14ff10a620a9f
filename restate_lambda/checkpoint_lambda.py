"""A :class:`~restate_lambda.checkpoint.Checkpointer` for runtimes on AWS Lambda: the offered
checkpoint URL is a Lambda function ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME``,
optionally ``:QUALIFIER``) and each checkpoint is one synchronous ``Invoke`` of that function.

The event and its answer carry the HTTP request and reply of the contract in
:mod:`restate_lambda.checkpoint`::

    {"restate_lambda_checkpoint": {"headers": {...}, "body": "<base64 framed messages>"}}
    -> {"status": 200, "body": "<base64 framed notifications>"}

A status other than 200 is mapped as the HTTP checkpointer maps it (409 fenced, 5xx retried);
so are a function error (``Unhandled``: the runtime function crashed or timed out), throttling
and transport errors (retried). A missing function or permission fails at once, and the sandbox
stops using that ARN (see :func:`usable`).

boto3 (present in AWS Lambda's Python runtimes) is imported on the first checkpoint only, and
one client per region is kept for the sandbox's life. The handler function's role needs
``lambda:InvokeFunction`` on the runtime's checkpoint function. ``AWS_ENDPOINT_URL_LAMBDA``
(boto3's own setting) points it at another endpoint, e.g. a local one in tests.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

from restate_lambda.checkpoint import (
    HEADER_JOURNAL_INDEX,
    HEADER_TOKEN,
    CheckpointBatch,
    CheckpointError,
)
from restate_lambda.checkpoint_client import (
    TransientCheckpointError,
    reply_body,
    send_with_retries,
)

#: The key of a checkpoint event (the runtime's entry points look for it).
EVENT_KEY = "restate_lambda_checkpoint"

_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>[A-Za-z0-9$_-]{1,128}))?$"
)
#: Error codes of Invoke worth another try (besides any 5xx).
_RETRYABLE = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "ServiceException", "EC2ThrottledException"}
)

#: Error codes of Invoke that say this sandbox cannot use the function at all.
_UNUSABLE = frozenset(
    {"AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException"}
)

_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()
#: ARNs this sandbox may not invoke (no permission, no such function): not used again.
_unusable: set[str] = set()


def is_lambda_arn(url: str) -> bool:
    """Whether ``url`` is a Lambda function ARN (possibly qualified)."""
    return _ARN.match(url) is not None


def usable(arn: str) -> bool:
    """Whether ``arn`` is a Lambda function ARN this sandbox has not found it cannot invoke.

    A handler function whose role lacks ``lambda:InvokeFunction`` on it fails the attempt of
    its first checkpoint (the step runs again in the next attempt); from then on the sandbox
    does without the channel (it suspends after each run) instead of failing every attempt.
    """
    return arn not in _unusable and is_lambda_arn(arn)


def checkpoint_event(batch: CheckpointBatch) -> dict[str, Any]:
    """The Invoke payload carrying ``batch``."""
    headers = {
        "content-type": f"application/vnd.restate.invocation.v{batch.protocol_version}",
        "x-restate-invocation-id": batch.invocation_id,
        HEADER_TOKEN: batch.token,
        HEADER_JOURNAL_INDEX: str(batch.journal_index),
    }
    body = base64.b64encode(batch.entries).decode("ascii")
    return {EVENT_KEY: {"headers": headers, "body": body}}


class LambdaCheckpointer:
    """Invoke the function ``arn`` with each batch; retry transient failures ``attempts`` times
    in all.

    Args:
        arn: the runtime's checkpoint function (as offered in ``x-restate-checkpoint-url``).
        client: a boto3 Lambda client (default: one per region, made on first use).
        endpoint_url: for the default client (default: boto3's own configuration).
    """

    def __init__(
        self,
        arn: str,
        *,
        attempts: int = 3,
        backoff_s: float = 0.1,
        timeout_s: float = 15.0,
        client: Any = None,
        endpoint_url: str | None = None,
    ) -> None:
        match = _ARN.match(arn)
        if match is None:
            raise ValueError(f"not a Lambda function ARN: {arn!r}")
        self.arn = arn
        self.region = match["region"]
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.endpoint_url = endpoint_url
        self._client = client

    async def checkpoint(self, batch: CheckpointBatch) -> bytes:
        """Invoke the function with ``batch``; the reply's notifications once it is durable."""
        payload = json.dumps(checkpoint_event(batch), separators=(",", ":")).encode()
        return await send_with_retries(
            lambda: self._invoke(payload),
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            target=self.arn,
        )

    def _invoke(self, payload: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client().invoke(
                FunctionName=self.arn, InvocationType="RequestResponse", Payload=payload
            )
            raw = answer["Payload"].read()
        except ClientError as e:
            error = e.response.get("Error", {})
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            message = f"{error.get('Code')}: {error.get('Message')}"
            if status >= 500 or error.get("Code") in _RETRYABLE:
                raise TransientCheckpointError(message) from e
            if error.get("Code") in _UNUSABLE:
                _unusable.add(self.arn)
            raise CheckpointError(f"cannot invoke {self.arn}: {message}") from e
        except BotoCoreError as e:  # connection, timeouts
            raise TransientCheckpointError(str(e)) from e
        if answer.get("FunctionError"):
            text = raw[:300].decode("utf-8", "replace")
            raise TransientCheckpointError(f"the checkpoint function failed: {text}")
        return reply_body(*_parse_reply(raw))

    def client(self) -> Any:
        """The boto3 Lambda client (shared by the checkpointers of one region)."""
        if self._client is None:
            self._client = _client(self.region, self.endpoint_url, self.timeout_s)
        return self._client


def _parse_reply(raw: bytes) -> tuple[int, bytes]:
    try:
        reply = json.loads(raw)
        status = int(reply["status"])
        body = base64.b64decode(reply.get("body") or "", validate=True)
    except Exception as e:  # not our reply: the ARN names a function that is no runtime's
        text = raw[:200].decode("utf-8", "replace")
        raise CheckpointError(
            f"the checkpoint function answered no checkpoint reply: {text}"
        ) from e
    return status, body


def _client(region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    key = (region, endpoint_url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=timeout_s,
                retries={"total_max_attempts": 1},  # send_with_retries retries
            )
            client = boto3.client(
                "lambda", region_name=region, endpoint_url=endpoint_url, config=config
            )
            _clients[key] = client
    return client
