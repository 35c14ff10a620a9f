"""The whole AWS topology on one machine: Lambda entry points, DynamoDB Local, moto SQS/S3.

Each "Lambda function" is its own :class:`~infra.aws_runtime.AwsRuntime` (own event loop, own
clients, own registry cache), configured only through :class:`~infra.settings.AwsSettings`
like a real sandbox. Handler functions run behind the local Invoke endpoint. The test plays the
SQS event source mapping: it receives from the (moto) queue, calls ``worker_handler`` with the
batch and deletes what the worker did not report as failed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import boto3

from infra import lambdas
from infra.aws_runtime import AwsRuntime
from infra.local_lambda import LocalLambda
from infra.provision import create_table
from infra.settings import AwsSettings
from restate_lambda.clock import Clock
from tests.aws import events
from tests.support.aws import REGION, TEST_BUCKET

Response = tuple[int, dict[str, str], bytes]


@dataclass
class Stack:
    """One deployed runtime: several ingress sandboxes, a worker, a sweeper and an admin."""

    settings: AwsSettings
    clock: Clock | None
    sqs: Any
    table: str
    ingresses: list[AwsRuntime] = field(default_factory=list)
    worker: AwsRuntime | None = None
    sweeper: AwsRuntime | None = None
    admin: AwsRuntime | None = None
    worker_batches: int = 0
    #: The local function committing checkpoints (``aws_stack(checkpoints=...)``), or None.
    checkpoint_function: str | None = None

    def _runtime(self) -> AwsRuntime:
        return AwsRuntime(self.settings, clock=self.clock)

    def start(self, ingresses: int = 1) -> None:
        """Create the sandboxes (nothing connects before the first event)."""
        self.ingresses = [self._runtime() for _ in range(ingresses)]
        self.worker = self._runtime()
        self.sweeper = self._runtime()
        self.admin = self._runtime()

    def close(self) -> None:
        """Tear every sandbox down."""
        for rt in [*self.ingresses, self.worker, self.sweeper, self.admin]:
            if rt is not None:
                rt.close()

    # ---------------------------------------------------------------- calls
    def http(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        headers: dict[str, str] | None = None,
        sandbox: int = 0,
        shape: Callable[..., dict[str, Any]] = events.http_api_v2,
    ) -> Response:
        """One HTTP request through API Gateway into ``ingress_handler``."""
        data = body.encode() if isinstance(body, str) else (body or b"")
        hdrs = {"content-type": "application/json", **(headers or {})} if data else (headers or {})
        answer = self.ingresses[sandbox].ingress(shape(method, path, data, hdrs), events.Context())
        raw = answer.get("body") or ""
        payload = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
        return int(answer["statusCode"]), dict(answer.get("headers") or {}), payload

    def register(self, arn: str) -> dict[str, Any]:
        """Register a deployment through the admin function (direct invocation)."""
        assert self.admin is not None
        result: dict[str, Any] = self.admin.admin({"register": {"arn": arn}}, events.Context())
        assert "deployment" in result, result
        return result

    # ---------------------------------------------------------------- the event source mapping
    def pump_once(self, wait_s: int = 0) -> int:
        """Receive one batch from the queue and hand it to the worker; return its size."""
        assert self.worker is not None
        got = self.sqs.receive_message(
            QueueUrl=self.settings.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not got:
            return 0
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
            }
            for m in got
        ]
        answer = self.worker.worker({"Records": records}, events.Context())
        self.worker_batches += 1
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        done = [m for m in got if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.settings.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)
                ],
            )
        return len(got)

    def pump(self, until: Callable[[], bool] | None = None, timeout_s: float = 30.0) -> None:
        """Pump until ``until()`` holds (or, without it, until the queue has nothing visible)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if until is not None and until():
                return
            n = self.pump_once(wait_s=0)
            if n == 0:
                if until is None:
                    return
                time.sleep(0.02)
        raise TimeoutError("the queue did not deliver what the test waited for")

    def sweep(self) -> dict[str, Any]:
        """One scheduled sweeper run."""
        assert self.sweeper is not None
        result: dict[str, Any] = self.sweeper.sweeper({"source": "aws.events"}, events.Context())
        return result


@contextmanager
def aws_stack(
    dynamodb: str,
    moto: str,
    lambda_endpoint: str,
    *,
    clock: Clock | None = None,
    ingresses: int = 1,
    env: dict[str, str] | None = None,
    checkpoints: LocalLambda | None = None,
) -> Iterator[Stack]:
    """A fresh table and queue, and the runtime's sandboxes configured to use them.

    ``checkpoints``: host a runtime function (:attr:`Stack.checkpoint_function`, a fresh
    sandbox per thread, as concurrent invocations get on Lambda) on that local Invoke endpoint
    and offer its ARN as the checkpoint channel; without it the channel is ``off`` (unless
    ``env`` sets ``RESTATE_LAMBDA_CHECKPOINT_URL``).
    """
    suffix = uuid.uuid4().hex[:12]
    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=dynamodb)
    table = f"e2e-{suffix}"
    create_table(ddb, table)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto)
    queue_url = sqs.create_queue(QueueName=f"work-{suffix}")["QueueUrl"]
    storage = (
        f"dynamodb://{table}?region={REGION}&endpoint_url={quote(dynamodb, safe='')}"
        f"&bucket={TEST_BUCKET}&s3_endpoint_url={quote(moto, safe='')}"
    )
    settings = AwsSettings.from_env(
        {
            "RESTATE_LAMBDA_STORAGE": storage,
            "RESTATE_LAMBDA_QUEUE_URL": queue_url,
            "AWS_REGION": REGION,
            "RESTATE_LAMBDA_SQS_ENDPOINT_URL": moto,
            "RESTATE_LAMBDA_LAMBDA_ENDPOINT_URL": lambda_endpoint,
            "RESTATE_LAMBDA_CHECKPOINT_URL": (
                checkpoints.arn(f"runtime-{suffix}") if checkpoints is not None else "off"
            ),
            **(env or {}),
        }
    )
    stack = Stack(settings, clock, sqs, table)
    sandboxes: list[AwsRuntime] = []
    if checkpoints is not None:

        def sandbox() -> Callable[[Any, Any], Any]:
            rt = AwsRuntime(settings, clock=clock)
            sandboxes.append(rt)
            return lambdas.routed(rt, "worker")

        stack.checkpoint_function = f"runtime-{suffix}"
        checkpoints.add_function(stack.checkpoint_function, sandbox)
    stack.start(ingresses)
    try:
        yield stack
    finally:
        stack.close()
        if checkpoints is not None:
            checkpoints.remove_function(f"runtime-{suffix}")
        for rt in sandboxes:
            rt.close()
        sqs.delete_queue(QueueUrl=queue_url)
        ddb.delete_table(TableName=table)


def body_json(response: Response) -> Any:
    """The JSON body of a response (None for an empty body: a handler that returned None)."""
    assert response[0] == 200, response
    return json.loads(response[2]) if response[2] else None
