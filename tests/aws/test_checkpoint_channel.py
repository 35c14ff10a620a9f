"""The checkpoint channel on AWS: our SDK's handler function checkpoints each ``ctx.run`` by
invoking the runtime function (a Lambda ARN offered as ``x-restate-checkpoint-url``) with the
real boto3 client, through the local Invoke endpoint; DynamoDB Local and moto underneath."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import restate_lambda
from infra import lambdas
from infra.aws_runtime import AwsRuntime
from infra.local_lambda import LambdaHandler, LocalLambda, restate_lambda_handler
from restate_lambda.checkpoint import CheckpointError, CheckpointFencedError
from restate_lambda.checkpoint_lambda import LambdaCheckpointer
from restate_lambda.clock import ManualClock
from tests.aws.stack import Stack, aws_stack, body_json

#: (handler key, step) -> executions of the step's body
STEPS: Counter[tuple[str, str]] = Counter()
#: Released by the fencing test: the first attempt's slow step waits for it.
RELEASE = threading.Event()
#: Exceptions the SDK's Lambda checkpointer raised (the fencing test looks for a 409).
RAISED: list[BaseException] = []


#: Set by the crash scenario's 4th step on its first try: its sandbox dies there.
CUT = threading.Event()
#: Lets the dead sandbox's abandoned thread go on (at the end of the test).
BURIED = threading.Event()


def _step(key: str, name: str, value: int) -> int:
    STEPS[(key, name)] += 1
    first = STEPS[(key, name)] == 1
    if name == "crash-3" and first:
        CUT.set()
        BURIED.wait(30)
    if name == "slow-1" and first:
        assert RELEASE.wait(30), "the test never released the first attempt"
    return value + 1


ckpt = restate_lambda.Service("Ckpt")


@ckpt.handler()
async def five(ctx: restate_lambda.Context, key: str) -> int:
    """Five steps; ``key`` names the scenario (``crash``: the 4th step's first try dies)."""
    x = 0
    for i in range(5):
        name = f"{key.split('-')[0]}-{i}"
        x = await ctx.run_typed(name, lambda n=name, v=x: _step(key, n, v))
    return x


def _function() -> LambdaHandler:
    """Our SDK's handler function. When a step sets :data:`CUT`, the invocation fails at once
    as when its sandbox dies (Lambda's ``Unhandled`` function error), the step left hanging."""
    factory = restate_lambda_handler([ckpt])

    def handler(event: Any, context: Any) -> Any:
        done: list[Any] = []
        thread = threading.Thread(
            target=lambda: done.append(factory()(event, context)), daemon=True
        )
        thread.start()
        while thread.is_alive():
            if CUT.is_set():
                CUT.clear()
                raise RuntimeError("Runtime.ExitError: the sandbox died")
            thread.join(0.02)
        return done[0]

    return handler


@pytest.fixture(scope="module")
def ckpt_function(local_lambda: LocalLambda) -> Iterator[str]:
    arn = local_lambda.add_function("ckpt-ours", _function)
    yield arn
    local_lambda.remove_function("ckpt-ours")


@pytest.fixture
def stack(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    ckpt_function: str,
    clock: ManualClock,
) -> Iterator[Stack]:
    with aws_stack(
        dynamodb_endpoint,
        s3_endpoint,
        local_lambda.endpoint_url,
        clock=clock,
        checkpoints=local_lambda,
    ) as s:
        s.register(ckpt_function)
        yield s


def _output(s: Stack, inv_id: str) -> tuple[int, Any]:
    status, _, body = s.http("GET", f"/restate/invocation/{inv_id}/output")
    return status, (json.loads(body) if status == 200 else body)


def test_five_steps_run_in_one_handler_invocation(stack: Stack, local_lambda: LocalLambda) -> None:
    assert stack.checkpoint_function is not None
    handler_before = local_lambda.invocations("ckpt-ours")
    assert body_json(stack.http("POST", "/Ckpt/five", '"one"')) == 5
    assert local_lambda.invocations("ckpt-ours") - handler_before == 1
    assert local_lambda.invocations(stack.checkpoint_function) == 5  # one per step
    assert all(STEPS[("one", f"one-{i}")] == 1 for i in range(5))


def test_a_sandbox_dying_after_the_third_checkpoint_resumes_without_rerunning_steps(
    stack: Stack, local_lambda: LocalLambda, clock: ManualClock
) -> None:
    handler_before = local_lambda.invocations("ckpt-ours")
    status, _, body = stack.http("POST", "/Ckpt/five/send", '"crash"')
    assert status == 202, body
    inv_id = json.loads(body)["invocationId"]
    deadline = time.monotonic() + 60
    assert stack.checkpoint_function is not None
    try:
        while _output(stack, inv_id)[0] != 200:
            assert time.monotonic() < deadline, "the invocation did not finish"
            stack.pump()
            clock.advance(60_000)  # past the retry delay
            stack.sweep()
        checkpoints = local_lambda.invocations(stack.checkpoint_function)
    finally:
        BURIED.set()  # the dead sandbox's step returns: its checkpoint is refused (stale token)
    assert _output(stack, inv_id) == (200, 5)
    assert checkpoints == 5  # 3 before the crash, 2 after
    assert local_lambda.invocations("ckpt-ours") - handler_before == 2
    time.sleep(0.5)  # the abandoned thread's checkpoint is refused: it never runs step 5
    assert [STEPS[("crash", f"crash-{i}")] for i in range(5)] == [1, 1, 1, 2, 1]


def test_a_fenced_off_attempt_stops_at_its_next_checkpoint(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    ckpt_function: str,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt outlasts its lease while in step 2; the sweeper hands the invocation
    to another attempt, which finishes it. The first one's next checkpoint is answered 409
    (stale token): its SDK stops there and never runs step 3."""
    original = LambdaCheckpointer.checkpoint

    async def recording(self: LambdaCheckpointer, batch: Any) -> bytes:
        try:
            return await original(self, batch)
        except CheckpointError as exc:
            RAISED.append(exc)
            raise

    monkeypatch.setattr(LambdaCheckpointer, "checkpoint", recording)
    RELEASE.clear()
    env = {"RESTATE_LAMBDA_CALL_DEADLINE_S": "1"}
    with aws_stack(
        dynamodb_endpoint,
        s3_endpoint,
        local_lambda.endpoint_url,
        clock=clock,
        env=env,
        checkpoints=local_lambda,
    ) as s:
        s.register(ckpt_function)
        status, headers, body = s.http("POST", "/Ckpt/five", '"slow"')
        assert status == 504, body  # the first attempt waits in step "slow-1"
        inv_id = {k.lower(): v for k, v in headers.items()}["x-restate-id"]
        clock.advance(15 * 60_000)  # its lease ends
        s.sweep()
        s.pump(until=lambda: _output(s, inv_id)[0] == 200)
        assert _output(s, inv_id) == (200, 5)
        RELEASE.set()  # the first attempt checkpoints step 2 with its stale token
        deadline = time.monotonic() + 20
        while not RAISED:
            assert time.monotonic() < deadline, "the first attempt never checkpointed"
            time.sleep(0.05)
        time.sleep(0.3)  # had it gone on, step 3 would run now
    assert isinstance(RAISED[0], CheckpointFencedError), RAISED
    assert [STEPS[("slow", f"slow-{i}")] for i in range(5)] == [1, 2, 1, 1, 1]


def test_by_default_the_function_running_the_attempt_takes_its_checkpoints(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    ckpt_function: str,
    clock: ManualClock,
) -> None:
    """No ``RESTATE_LAMBDA_CHECKPOINT_URL``: the ingress function offers its own ARN (its
    context's ``invoked_function_arn``) and accepts the checkpoint events."""
    env = {"RESTATE_LAMBDA_CHECKPOINT_URL": ""}
    sandboxes: list[AwsRuntime] = []
    with aws_stack(
        dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url, clock=clock, env=env
    ) as s:

        def sandbox() -> LambdaHandler:
            rt = AwsRuntime(s.settings, clock=clock)
            sandboxes.append(rt)
            return lambdas.routed(rt, "ingress")

        local_lambda.add_function("ingress", sandbox)  # the name in tests.aws.events.Context
        try:
            s.register(ckpt_function)
            before = local_lambda.invocations("ckpt-ours")
            assert body_json(s.http("POST", "/Ckpt/five", '"self"')) == 5
            assert local_lambda.invocations("ckpt-ours") - before == 1
            assert local_lambda.invocations("ingress") == 5
        finally:
            local_lambda.remove_function("ingress")
            for rt in sandboxes:
                rt.close()


def test_a_handler_that_cannot_invoke_the_checkpoint_function_does_without_it(
    dynamodb_endpoint: str,
    s3_endpoint: str,
    local_lambda: LocalLambda,
    ckpt_function: str,
    clock: ManualClock,
) -> None:
    """The offered function does not exist (or the role may not invoke it): the first attempt
    fails at its first checkpoint; the retry suspends after each run and finishes."""
    env = {"RESTATE_LAMBDA_CHECKPOINT_URL": local_lambda.arn(f"missing-{time.time_ns()}")}
    with aws_stack(
        dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url, clock=clock, env=env
    ) as s:
        s.register(ckpt_function)
        before = local_lambda.invocations("ckpt-ours")
        status, _, body = s.http("POST", "/Ckpt/five/send", '"denied"')
        assert status == 202, body
        inv_id = json.loads(body)["invocationId"]
        deadline = time.monotonic() + 60
        while _output(s, inv_id)[0] != 200:
            assert time.monotonic() < deadline, "the invocation did not finish"
            s.pump()
            clock.advance(60_000)
            s.sweep()
        assert _output(s, inv_id) == (200, 5)
    # the failed attempt ran step 1 once more; then one invocation per step and the last
    assert [STEPS[("denied", f"denied-{i}")] for i in range(5)] == [2, 1, 1, 1, 1]
    assert local_lambda.invocations("ckpt-ours") - before == 1 + 6
