"""Cost benchmark: AWS requests and dollars per invocation of the runtime's AWS topology.

Runs the Lambda entry points exactly as deployed (``infra.lambdas``' runtime: ingress via API
Gateway v2 events, worker fed from SQS, sweeper), against DynamoDB Local, moto (S3, SQS) and the
local Lambda Invoke endpoint hosting the handler functions, and counts every AWS request the
runtime makes through boto3 event hooks on every client it creates:

* DynamoDB requests and **consumed capacity** (``ReturnConsumedCapacity=INDEXES`` is added to
  every call): the write units DynamoDB Local reports (``wcu``), and the same writes recounted
  from each request with AWS's documented on-demand rule (``wru_rule``): 2 units per started KB
  of every item of a ``TransactWriteItems`` (puts, deletes and condition checks alike), 1 per
  started KB of a plain ``PutItem``/``DeleteItem``/``UpdateItem`` and of each item of a
  ``BatchWriteItem``, a failed write included, plus the index units DynamoDB Local reports.
  The size of a deleted or checked item is not in the request; every item this runtime writes
  is under 1 KB, so they count as one KB. DynamoDB Local reports fewer units than the rule for
  some transactions (2 for a 2-item transaction); both are printed, and the dollars of both;
  reads are DynamoDB Local's units (1 per 4 KB, strongly consistent);
* S3 requests (PUT-class, GET-class), SQS requests (send, receive, delete; the event source
  mapping's receive/delete are played by this script and counted), Lambda ``Invoke`` requests
  to handler functions, and the runtime's own Lambda invocations (ingress, worker, sweeper,
  and the checkpoint function: with ``--checkpoints on``, the default, our SDK's handlers
  checkpoint each ``ctx.run`` by invoking it, one Lambda request and one DynamoDB commit per
  step, instead of suspending after each run).

Each scenario runs ``--n`` times after a warm-up; the numbers are averages per invocation. The
runtime's clock moves 1 ms each time it is read, so writes that depend on time passing (a lease
renewed, a due time moved: 2 index units each) are counted as they would be on AWS.
Deferred work is measured too: after a simulated day the sweeper purges the completed
invocations (retention), and its cost is added per invocation.

Prices (``PRICES``) are AWS's public list prices, us-east-1, as stated with their date in the
output. Lambda compute (GB-seconds) is excluded; API Gateway is shown separately.

Usage: ``python benchmarks/cost_bench.py [--n 50] [--sdk ours,sdk]`` (needs java for DynamoDB
Local; ``scripts/dynamodb_local.sh`` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import botocore.session

PRICE_DATE = "AWS public list prices, us-east-1, as published in 2025 (checked 2026-11)"
#: $ per single request / unit.
PRICES = {
    "ddb_wru": 0.625 / 1e6,  # DynamoDB on-demand write request unit (after the Nov 2024 cut)
    "ddb_rru": 0.125 / 1e6,  # DynamoDB on-demand read request unit
    "s3_put": 0.005 / 1e3,  # S3 Standard PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1e3,  # S3 Standard GET and others
    "sqs": 0.40 / 1e6,  # SQS standard queue request (per 64 KB chunk)
    "lambda_request": 0.20 / 1e6,  # Lambda request charge (compute excluded)
    "apigw_http": 1.00 / 1e6,  # API Gateway HTTP API request (first 300 M / month)
}
DURABLE_FUNCTIONS_PER_OP = 8.0 / 1e6  # AWS Lambda durable functions, $ per durable operation
STEP_FUNCTIONS_PER_TRANSITION = 25.0 / 1e6  # Step Functions Standard, $ per state transition

_DDB_CAPACITY_OPS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
}
_DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
_S3_GET_CLASS = {"GetObject", "HeadObject", "HeadBucket"}


@dataclass
class Tally:
    """Requests and units counted so far."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0
    #: write units by AWS's per-item rule (table) plus the index units DynamoDB Local reported
    wru_rule: float = 0.0
    runtime_invocations: Counter[str] = field(default_factory=Counter)
    apigw: int = 0
    #: Invocations of the checkpoint function so far (read from the local Invoke endpoint).
    checkpoints: Callable[[], int] = lambda: 0

    def snapshot(self) -> dict[str, float]:
        """Flat totals."""
        r = self.requests
        out = {
            "ddb_reads": sum(
                n for (s, op), n in r.items() if s == "dynamodb" and op not in _DDB_WRITES
            ),
            "ddb_writes": sum(
                n for (s, op), n in r.items() if s == "dynamodb" and op in _DDB_WRITES
            ),
            "rcu": self.rcu,
            "wcu": self.wcu,
            "wru_rule": self.wru_rule,
            "s3_put": sum(n for (s, op), n in r.items() if s == "s3" and op not in _S3_GET_CLASS),
            "s3_get": sum(n for (s, op), n in r.items() if s == "s3" and op in _S3_GET_CLASS),
            "sqs": sum(n for (s, _op), n in r.items() if s == "sqs"),
            # the SDK's checkpoint invokes go through boto3 too: counted as the runtime's
            "handler_invokes": r[("lambda", "Invoke")] - self.checkpoints(),
            "runtime_invocations": float(sum(self.runtime_invocations.values()))
            + self.checkpoints(),
            "checkpoints": float(self.checkpoints()),
            "apigw": float(self.apigw),
        }
        return {k: float(v) for k, v in out.items()}


TALLY = Tally()


def _item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values (S and B by length,
    N about one byte per two digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, v),) = value.items()
        if kind == "S":
            size += len(v.encode())
        elif kind == "B":
            size += len(v)
        elif kind == "N":
            size += len(str(v).lstrip("-").replace(".", "")) // 2 + 2
        else:
            size += len(json.dumps(v))
    return size


def _kb(item: dict[str, Any] | None) -> int:
    return max(1, -(-_item_bytes(item) // 1024)) if item else 1


def rule_write_units(operation: str, params: dict[str, Any]) -> float:
    """Table write units of one write request by AWS's on-demand rule (module docstring)."""
    if operation == "TransactWriteItems":
        total = 0
        for action in params.get("TransactItems", []):
            ((kind, body),) = action.items()
            total += 2 * (_kb(body.get("Item")) if kind == "Put" else 1)
        return float(total)
    if operation == "PutItem":
        return float(_kb(params.get("Item")))
    if operation in ("DeleteItem", "UpdateItem"):
        return 1.0
    if operation == "BatchWriteItem":
        total = 0
        for requests in params.get("RequestItems", {}).values():
            for r in requests:
                total += _kb(r["PutRequest"]["Item"]) if "PutRequest" in r else 1
        return float(total)
    return 0.0


def _index_write_units(parsed: dict[str, Any]) -> float:
    consumed = parsed.get("ConsumedCapacity")
    total = 0.0
    for entry in (consumed if isinstance(consumed, list) else [consumed]) if consumed else []:
        for index in (entry.get("GlobalSecondaryIndexes") or {}).values():
            total += float(index.get("CapacityUnits", index.get("WriteCapacityUnits", 0.0)))
    return total


#: The rule's units of the request in flight on each thread (boto3 calls run on a pool).
_in_flight = threading.local()


def _add_capacity(parsed: dict[str, Any]) -> None:
    consumed = parsed.get("ConsumedCapacity")
    if consumed is None:
        return
    for entry in consumed if isinstance(consumed, list) else [consumed]:
        units = float(entry.get("CapacityUnits", 0.0))
        write = entry.get("WriteCapacityUnits")
        read = entry.get("ReadCapacityUnits")
        if write is not None or read is not None:
            TALLY.wcu += float(write or 0.0)
            TALLY.rcu += float(read or 0.0)
        else:
            _pending_units.append(units)


_pending_units: list[float] = []


def instrument() -> None:
    """Count every request of every boto3 client created from now on (event hooks)."""
    original = botocore.session.Session.create_client

    def create_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = original(self, service_name, *args, **kwargs)

        def before(params: dict[str, Any], model: Any, **_: Any) -> None:
            if service_name == "dynamodb" and model.name in _DDB_CAPACITY_OPS:
                params.setdefault("ReturnConsumedCapacity", "INDEXES")
            if service_name == "dynamodb" and model.name in _DDB_WRITES:
                _in_flight.units = rule_write_units(model.name, params)

        def after(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
            if model.name == "ReceiveMessage" and not parsed.get("Messages"):
                return  # empty polls are the event source's fixed cost, reported separately
            TALLY.requests[(service_name, model.name)] += 1
            if service_name == "dynamodb":
                _pending_units.clear()
                _add_capacity(parsed)
                for units in _pending_units:
                    if model.name in _DDB_WRITES:
                        TALLY.wcu += units
                    else:
                        TALLY.rcu += units
                if model.name in _DDB_WRITES and "ConsumedCapacity" not in parsed:
                    TALLY.wcu += 1.0  # a failed conditional write still costs a unit
                if model.name in _DDB_WRITES:
                    TALLY.wru_rule += getattr(_in_flight, "units", 0.0)
                    TALLY.wru_rule += _index_write_units(parsed)
                    _in_flight.units = 0.0

        client.meta.events.register(f"before-parameter-build.{service_name}", before)
        client.meta.events.register(f"after-call.{service_name}", after)
        return client

    botocore.session.Session.create_client = create_client


def cost(per_invocation: dict[str, float], *, rule: bool = False) -> dict[str, float]:
    """Dollars per invocation by line item (Lambda compute excluded); write units as DynamoDB
    Local reported them, or by AWS's per-item rule (``rule``)."""
    p = per_invocation
    writes = p["wru_rule"] if rule else p["wcu"]
    return {
        "dynamodb": writes * PRICES["ddb_wru"] + p["rcu"] * PRICES["ddb_rru"],
        "s3": p["s3_put"] * PRICES["s3_put"] + p["s3_get"] * PRICES["s3_get"],
        "sqs": p["sqs"] * PRICES["sqs"],
        "lambda_requests": (p["handler_invokes"] + p["runtime_invocations"])
        * PRICES["lambda_request"],
        "api_gateway": p["apigw"] * PRICES["apigw_http"],
    }


# ---------------------------------------------------------------------------- the topology


@contextmanager
def topology(sdk: str, checkpoints: bool = True) -> Iterator[Any]:
    """Servers, a fresh table and queue, handler functions, and the runtime's sandboxes (with
    the checkpoint function hosted next to the handlers when ``checkpoints``)."""
    from infra.local_lambda import LocalLambda, restate_lambda_handler, restate_sdk_handler
    from restate_lambda.clock import ManualClock, SystemClock
    from tests.aws import handlers
    from tests.aws.stack import aws_stack
    from tests.support.aws import SERVERS, aws_test_env

    aws_test_env()
    ddb, moto = SERVERS.dynamodb(), SERVERS.s3()
    factory = (
        restate_lambda_handler(handlers.OURS_SERVICES)
        if sdk == "ours"
        else restate_sdk_handler(handlers.SDK_SERVICES)
    )

    class _MovingClock(ManualClock):
        """Time moves 1 ms each time the runtime reads it, as it would while the runtime
        works: a clock frozen between reads would hide writes that depend on time passing
        (a write that moves the record's due time, an indexed attribute, costs two more
        write units than one that keeps it)."""

        def now_ms(self) -> int:
            self._now += 1
            return self._now

    clock = _MovingClock(SystemClock().now_ms())
    with LocalLambda() as local:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url  # the SDK's checkpoints
        arn = local.add_function(f"handlers-{uuid.uuid4().hex[:6]}", factory)
        offer = local if checkpoints else None
        with aws_stack(ddb, moto, local.endpoint_url, clock=clock, checkpoints=offer) as stack:
            name = stack.checkpoint_function
            if name is not None:
                TALLY.checkpoints = lambda: local.invocations(name)
            stack.register(arn)
            yield stack, clock
        TALLY.checkpoints = lambda: 0


def _count_runtime_calls(stack: Any) -> None:
    """Count the runtime's own Lambda invocations (ingress, worker, sweeper) and API calls."""
    for name in ("ingress", "worker", "sweeper"):
        for rt in [*stack.ingresses, stack.worker, stack.sweeper]:
            original = getattr(rt, name)

            def counted(*args: Any, _o: Callable[..., Any] = original, _n: str = name) -> Any:
                TALLY.runtime_invocations[_n] += 1
                if _n == "ingress":
                    TALLY.apigw += 1
                return _o(*args)

            setattr(rt, name, counted)


def measure(stack: Any, n: int, one: Callable[[int], None]) -> dict[str, float]:
    """Average requests per invocation of ``one(i)`` (warm: one call first, uncounted)."""
    one(-1)
    stack.pump()
    before = TALLY.snapshot()
    for i in range(n):
        one(i)
    stack.pump()
    after = TALLY.snapshot()
    return {k: (after[k] - before[k]) / n for k in after}


def scenarios(stack: Any, clock: Any, n: int) -> dict[str, dict[str, float]]:
    """Every scenario's per-invocation numbers."""
    from tests.aws.stack import body_json

    def call(path: str, body: str) -> Callable[[int], None]:
        def one(i: int) -> None:
            status, _, payload = stack.http("POST", path.format(i=i % 10), body)
            assert status == 200, payload[:300]

        return one

    def send(i: int) -> None:
        status, _, payload = stack.http("POST", "/Steps/five/send", "1")
        assert status == 202, payload[:300]

    out = {
        "greet": measure(stack, n, call("/Greeter/greet", '"cost"')),
        "counter add": measure(stack, n, call("/Counter/k{i}/add", "1")),
        "5-step (call)": measure(stack, n, call("/Steps/five", "1")),
        "5-step (send)": measure(stack, n, send),
    }
    # deferred: a day later the sweeper finds every completed invocation past retention and the
    # worker purges it
    completed = 4 * (n + 1)
    before = TALLY.snapshot()
    clock.advance(25 * 3600 * 1000)
    for _ in range(20):
        swept = stack.sweep()["swept"]
        stack.pump()
        if swept == 0:
            break
    after = TALLY.snapshot()
    out["retention purge (deferred)"] = {k: (after[k] - before[k]) / completed for k in after}
    assert body_json(stack.http("POST", "/Greeter/greet", '"still"')) == "Hello, still!"
    return out


# ---------------------------------------------------------------------------- report


def report(results: dict[str, dict[str, dict[str, float]]], n: int, checkpoints: bool) -> None:
    """Print the per-invocation table, the cost per million and the comparison."""
    print(f"restate-lambda cost benchmark (n={n} per scenario; {PRICE_DATE})")
    print(f"checkpoint channel: {'on' if checkpoints else 'off'} (--checkpoints)")
    print(
        "prices: DynamoDB $0.625/M WRU, $0.125/M RRU; S3 $5/M PUT, $0.40/M GET; SQS $0.40/M; "
        "Lambda $0.20/M requests (compute excluded); API Gateway HTTP $1.00/M"
    )
    cols = [
        "ddb_writes",
        "ddb_reads",
        "wcu",
        "wru_rule",
        "rcu",
        "s3_put",
        "s3_get",
        "sqs",
        "handler_invokes",
        "runtime_invocations",
        "checkpoints",
    ]
    header = f"{'sdk':5} {'scenario':27}" + "".join(f"{c[:10]:>11}" for c in cols)
    header += f"{'$/M excl.':>11}{'$/M rule':>11}{'$/M +APIGW':>11}"
    print(header)
    for sdk, by_scenario in results.items():
        for name, per in by_scenario.items():
            c = cost(per)
            without = sum(v for k, v in c.items() if k != "api_gateway") * 1e6
            by_rule = sum(v for k, v in cost(per, rule=True).items() if k != "api_gateway") * 1e6
            line = f"{sdk:5} {name:27}" + "".join(f"{per[k]:>11.2f}" for k in cols)
            print(
                line + f"{without:>11.2f}{by_rule:>11.2f}{without + c['api_gateway'] * 1e6:>11.2f}"
            )
    print("($/M excl.: write units as DynamoDB Local reports them; $/M rule: by AWS's per-item")
    print("rule, see the module docstring; both without API Gateway and Lambda compute)")
    print()
    print("5-step workflow, $ per million (Lambda compute excluded; retention purge included):")
    for sdk, by_scenario in results.items():
        for mode in ("5-step (call)", "5-step (send)"):
            per = by_scenario[mode]
            purge = by_scenario["retention purge (deferred)"]
            total = {k: per[k] + purge[k] for k in per}
            c = cost(total)
            usd = sum(v for k, v in c.items() if k != "api_gateway") * 1e6
            usd_rule = sum(v for k, v in cost(total, rule=True).items() if k != "api_gateway")
            usd_rule *= 1e6
            writes = per["ddb_writes"]
            print(
                f"  {sdk:5} {mode:15} ${usd:6.2f}/M as reported, ${usd_rule:6.2f}/M by the rule"
                f"  (+${c['api_gateway'] * 1e6:.2f} API Gateway)"
                f"  DynamoDB writes {writes:.1f} (+{purge['ddb_writes']:.1f} purge)"
                f"  bars: <=7 writes {'OK' if writes + purge['ddb_writes'] <= 7 else 'MISSED'},"
                f" <=$8/M {'OK' if max(usd, usd_rule) <= 8 else 'MISSED'}"
            )
    durable = 6 * DURABLE_FUNCTIONS_PER_OP * 1e6
    sfn = 5 * STEP_FUNCTIONS_PER_TRANSITION * 1e6
    print(
        f"  AWS Lambda durable functions: ${durable:.2f}/M (6 operations: 5 steps + the execution, "
        "at $8/M operations; plus Lambda requests and compute)"
    )
    print(
        f"  Step Functions Standard:      ${sfn:.2f}/M (5 state transitions at $25/M; Lambda "
        "requests and compute for the tasks extra)"
    )
    print()
    print("fixed (not per invocation): the sweeper's 43,200 runs a month (1 Lambda request +")
    print("4 due-index queries each, about $0.01/month), and the SQS event source's empty long")
    print("polls (a few hundred thousand requests a month, about $0.25/month).")
    print(json.dumps({"prices": PRICES, "date": PRICE_DATE, "results": results}, indent=None))


def main() -> None:
    """Run the scenarios for each SDK and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument(
        "--sdk", default="ours,sdk", help="ours (restate_lambda), sdk (restate-sdk)"
    )
    parser.add_argument(
        "--checkpoints",
        choices=("on", "off"),
        default="on",
        help="offer the checkpoint function to handlers (as template.yaml does)",
    )
    args = parser.parse_args()
    checkpoints = args.checkpoints == "on"
    import logging

    logging.getLogger("restate").setLevel(logging.ERROR)
    instrument()
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for sdk in args.sdk.split(","):
            with topology(sdk, checkpoints) as (stack, clock):
                _count_runtime_calls(stack)
                results[sdk] = scenarios(stack, clock, args.n)
    finally:
        from tests.support.aws import SERVERS

        SERVERS.stop()
    report(results, args.n, checkpoints)


if __name__ == "__main__":
    main()
