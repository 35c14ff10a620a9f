"""End to end on one machine: API Gateway events -> ingress Lambda -> DynamoDB Local / moto S3,
SQS (moto) -> worker Lambda, handlers behind the local Lambda Invoke endpoint, timers fired by
the sweeper Lambda. Both SDKs' handler functions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3
import pytest

from infra.local_lambda import LocalLambda
from restate_lambda.clock import ManualClock, SystemClock
from tests.aws import events
from tests.aws.stack import Stack, aws_stack, body_json
from tests.support.aws import REGION, TEST_BUCKET


@pytest.fixture
def stack(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    function: str,
    clock: ManualClock,
) -> Iterator[Stack]:
    with aws_stack(
        dynamodb_endpoint,
        s3_endpoint,
        local_lambda.endpoint_url,
        clock=clock,
        checkpoints=local_lambda,
    ) as s:
        s.register(function)
        yield s


@pytest.mark.parametrize("shape", [events.http_api_v2, events.rest_v1, events.function_url])
def test_greet(stack: Stack, shape: object) -> None:
    status, headers, body = stack.http("POST", "/Greeter/greet", '"AWS"', shape=shape)  # type: ignore[arg-type]
    assert status == 200, body
    assert json.loads(body) == "Hello, AWS!"
    assert "x-restate-id" in {k.lower() for k in headers}


def test_five_steps_and_send(stack: Stack) -> None:
    assert body_json(stack.http("POST", "/Steps/five", "1")) == 6
    status, _, body = stack.http("POST", "/Steps/five/send", "10")
    assert status == 202, body
    inv_id = json.loads(body)["invocationId"]
    stack.pump()
    status, _, body = stack.http("GET", f"/restate/invocation/{inv_id}/output")
    assert (status, json.loads(body)) == (200, 15)


def test_counter_concurrent_adds(
    dynamodb_endpoint: str, s3_endpoint: str, local_lambda: LocalLambda, function: str
) -> None:
    """Eight adds to one key through four ingress sandboxes at once: the object's lock queues
    them; queued ones continue through SQS and the worker."""
    with aws_stack(dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url, ingresses=4) as s:
        s.register(function)
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(
                    lambda n: [
                        s.http("POST", "/Counter/hot/add", str(n), sandbox=n % 4)
                        for n in (n, n + 4)
                    ],
                    n,
                )
                for n in range(1, 5)
            ]
            s.pump(until=lambda: all(f.done() for f in futures), timeout_s=60)
            results = [r for f in futures for r in f.result()]
        assert all(status == 200 for status, _, _ in results), results
        values = sorted(json.loads(body) for _, _, body in results)
        total = sum(range(1, 9))
        assert values[-1] == total
        assert len(set(values)) == 8  # every add saw a distinct running total
        assert body_json(s.http("POST", "/Counter/hot/get")) == total


def test_workflow_with_sleep_and_awakeable(stack: Stack, clock: ManualClock) -> None:
    status, _, body = stack.http("POST", "/Flow/wf-1/run/send", "2")
    assert status == 202, body
    stack.pump()
    assert body_json(stack.http("POST", "/Flow/wf-1/awakeable")) is None  # still asleep
    # the handler's wall clock set the wake-up time: move past it (no real waiting)
    clock.advance(max(0, SystemClock().now_ms() - clock.now_ms()) + 3_000)
    assert stack.sweep()["swept"] >= 1  # the sweeper fires the timer; the worker resumes
    stack.pump()
    awakeable = body_json(stack.http("POST", "/Flow/wf-1/awakeable"))
    assert awakeable and awakeable.startswith("sign_")
    status, _, _ = stack.http("POST", f"/restate/awakeables/{awakeable}/resolve", '"a signal"')
    assert status == 202
    stack.pump()
    status, _, body = stack.http("GET", "/restate/workflow/Flow/wf-1/output")
    assert (status, json.loads(body)) == (200, "woke and got a signal")
    # the SQS wake-up scheduled for the sleep arrives late, as a duplicate: harmless
    stack.pump_once(wait_s=2)
    stack.pump()
    assert stack.http("GET", "/restate/workflow/Flow/wf-1/output")[0] == 200


def test_one_second_sleep_wakes_through_sqs_delay(
    dynamodb_endpoint: str, s3_endpoint: str, local_lambda: LocalLambda, function: str
) -> None:
    """Real time, no sweeper: the SQS delay message alone wakes a 1 s sleep within ~1 s."""
    with aws_stack(dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url) as s:
        s.register(function)
        assert s.http("POST", "/Flow/quick/run/send", "1")[0] == 202
        s.pump()
        started = time.monotonic()
        s.pump(
            until=lambda: body_json(s.http("POST", "/Flow/quick/awakeable")) is not None,
            timeout_s=10,
        )
        waited = time.monotonic() - started
        assert waited < 3.0, waited


def test_one_megabyte_payload_goes_through_s3(stack: Stack) -> None:
    data = "x" * 1_000_000
    status, _, body = stack.http("POST", "/Greeter/echo", json.dumps(data))
    assert status == 200, body[:300]
    assert json.loads(body) == data
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=stack.settings.sqs_endpoint_url)
    blobs = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="blobs/").get("Contents", [])
    assert any(b["Size"] >= 1_000_000 for b in blobs)


def test_seven_megabytes_is_a_clear_error(stack: Stack) -> None:
    status, _, body = stack.http("POST", "/Greeter/size", json.dumps("x" * 7_000_000))
    assert status == 413
    error = json.loads(body)
    assert error["message"]  # the ingress's {code, message} (today "cannot read body: ...")
    # the runtime keeps serving
    assert body_json(stack.http("POST", "/Greeter/greet", '"still here"')) == "Hello, still here!"


def test_custom_resource_registers_a_deployment(
    dynamodb_endpoint: str, s3_endpoint: str, local_lambda: LocalLambda
) -> None:
    """``Custom::RestateDeployment``: the admin function registers the version ARN and answers
    CloudFormation's pre-signed URL (SUCCESS, or FAILED with the reason)."""
    answers: list[dict[str, object]] = []

    class Capture(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            answers.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cfn?signature=x"

    def event(request_type: str, arn: str) -> dict[str, object]:
        return {
            "RequestType": request_type,
            "ResponseURL": url,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
            "RequestId": "r-1",
            "LogicalResourceId": "GreeterDeployment",
            "ResourceType": "Custom::RestateDeployment",
            "ResourceProperties": {"ServiceToken": "arn:...", "Arn": arn},
        }

    try:
        with aws_stack(dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url) as s:
            assert s.admin is not None
            s.admin.admin(event("Create", local_lambda.arn("sdk", "2")), events.Context())
            assert answers[-1]["Status"] == "SUCCESS", answers[-1]
            assert answers[-1]["PhysicalResourceId"] == local_lambda.arn("sdk", "2")
            assert body_json(s.http("POST", "/Greeter/greet", '"CFN"')) == "Hello, CFN!"
            s.admin.admin(event("Update", local_lambda.arn("sdk", "9")), events.Context())
            assert answers[-1]["Status"] == "FAILED"
            assert "ResourceNotFoundException" in str(answers[-1]["Reason"])
            s.admin.admin(event("Delete", local_lambda.arn("sdk", "2")), events.Context())
            assert answers[-1]["Status"] == "SUCCESS"
            listed = s.admin.admin({"list": "deployments"}, events.Context())
            assert [d["arn"] for d in listed["deployments"]] == [local_lambda.arn("sdk", "2")]
    finally:
        server.shutdown()
        server.server_close()


def test_a_call_past_the_gateway_deadline_goes_on_and_can_be_attached(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    function: str,
    clock: ManualClock,
) -> None:
    """A blocking call that outlasts the ingress's deadline (API Gateway's 29 s; here 1 s) is
    answered 504 with its id; it was stored before it ran, so it goes on (the worker takes it
    when the abandoned attempt's lease ends) and its result can be read by id."""
    env = {"RESTATE_LAMBDA_CALL_DEADLINE_S": "1", "RESTATE_LAMBDA_ATTEMPT_TIMEOUT_S": "5"}
    with aws_stack(
        dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url, clock=clock, env=env
    ) as s:
        s.register(function)
        status, headers, body = s.http("POST", "/Steps/slow", "3")
        assert status == 504, body
        assert json.loads(body)["code"] == 504
        inv_id = {k.lower(): v for k, v in headers.items()}["x-restate-id"]
        status, _, body = s.http("GET", f"/restate/invocation/{inv_id}/output")
        assert status == 470, body  # stored and not completed: nothing was lost
        time.sleep(3)  # the handler Lambda's slow step ends (wall time)
        clock.advance(60_000)  # the abandoned attempt's lease (5 s + margin) ends
        s.sweep()
        s.pump(until=lambda: s.http("GET", f"/restate/invocation/{inv_id}/output")[0] == 200)
        status, _, body = s.http("GET", f"/restate/invocation/{inv_id}/output")
        assert (status, json.loads(body)) == (200, "slept")


def test_a_finished_invocation_leaves_one_item_that_dynamodb_expires(
    stack: Stack, clock: ManualClock
) -> None:
    """The journal rides in the invocation record and the record gets the table's TTL (``xt``)
    instead of a due time, so nothing is left for the sweeper to purge (checked on the raw
    items of DynamoDB Local, which keeps expired items; AWS deletes them)."""
    from tests.support.aws import SERVERS

    status, _, body = stack.http("POST", "/Steps/five/send", "1", headers={"idempotency-key": "k"})
    assert status == 202, body
    inv_id = json.loads(body)["invocationId"]
    stack.pump()
    assert body_json(stack.http("GET", f"/restate/invocation/{inv_id}/output")) == 6
    client = SERVERS.client("dynamodb")

    def items() -> list[dict[str, object]]:
        page = client.query(
            TableName=stack.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"inv/{inv_id}"}},
            ConsistentRead=True,
        )
        return list(page["Items"])

    (record,) = items()
    assert record["sk"] == {"S": "meta"}
    assert "xt" in record and "d" not in record and "ds" not in record
    expires_s = int(record["xt"]["N"])  # type: ignore[index]
    retention_s = expires_s - clock.now_ms() // 1000
    assert 23 * 3600 < retention_s <= 24 * 3600 + 1  # the handler's idempotency retention: 1 day
    clock.advance(2 * 24 * 3600 * 1000)
    stack.sweep()
    stack.pump()
    assert [i["sk"] for i in items()] == [{"S": "meta"}]  # not purged: the store's TTL drops it
    # Until DynamoDB deletes it, the record is past its retention: gone to clients, and the
    # same idempotency key starts a new invocation (as on Restate once it forgot the old one).
    status, _, _ = stack.http("GET", f"/restate/invocation/{inv_id}/output")
    assert status == 404
    status, _, body = stack.http("POST", "/Steps/five/send", "1", headers={"idempotency-key": "k"})
    assert (status, json.loads(body)) == (202, {"invocationId": inv_id, "status": "Accepted"})
    stack.pump()
    assert body_json(stack.http("GET", f"/restate/invocation/{inv_id}/output")) == 6
    (renewed,) = items()
    assert int(renewed["xt"]["N"]) > expires_s  # type: ignore[index]
