"""Cron schedules on the AWS topology: the sweeper Lambda fires them, no rule per schedule.

Three sweeper sandboxes run at once every (manual) minute against DynamoDB Local; the worker
drives what they dispatch through the (moto) SQS queue. A schedule every minute for an hour:
exactly 60 invocations.
"""

from __future__ import annotations

import threading
from typing import Any

from infra.aws_runtime import AwsRuntime
from infra.local_lambda import LocalLambda
from invoker import keys
from invoker import records as rec
from invoker.store import decode_invocation
from restate_lambda.clock import ManualClock
from tests.aws import events
from tests.aws.stack import aws_stack

MINUTE = 60_000


def test_every_minute_for_an_hour_with_three_sweepers(
    dynamodb_endpoint: str, s3_endpoint: str, local_lambda: LocalLambda
) -> None:
    start = (1_767_225_600_000 // MINUTE) * MINUTE
    clock = ManualClock(start)
    with aws_stack(dynamodb_endpoint, s3_endpoint, local_lambda.endpoint_url, clock=clock) as s:
        s.register(local_lambda.arn("ours", "1"))
        assert s.admin is not None
        admin = s.admin
        engine = admin.run(admin.ready())
        schedule, created = admin.run(
            engine.create_schedule(
                {"id": "hourly-greet", "cron": "* * * * *", "target": "Greeter/greet",
                 "body": "cron"}
            )
        )  # fmt: skip
        assert created and schedule["next_tick"] is not None
        sweepers = [AwsRuntime(s.settings, clock=clock) for _ in range(3)]
        try:
            for _ in range(60):
                clock.advance(MINUTE)
                results: list[Any] = []
                threads = [
                    threading.Thread(
                        target=lambda rt=rt, out=results: out.append(
                            rt.sweeper({"source": "aws.events"}, events.Context())
                        )
                    )
                    for rt in sweepers
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=60)
                assert len(results) == 3
                s.pump()
        finally:
            for rt in sweepers:
                rt.close()
        items = admin.run(engine.backend.scan(keys.INV_PREFIX, keys.META))
        greets = [decode_invocation(i.value) for i in items]
        greets = [i for i in greets if i.service == "Greeter" and i.handler == "greet"]
        assert len(greets) == 60
        assert all(i.status == rec.Status.COMPLETED for i in greets)
        assert {i.result.value for i in greets if i.result} == {b'"Hello, cron!"'}
        shown = admin.run(engine.get_schedule("hourly-greet"))
        assert shown["fired"] == 60 and shown["skipped"] == 0
