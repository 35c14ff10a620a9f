"""Events the admin Lambda answers besides HTTP: deployment registration without a server.

Three shapes reach the admin function:

* **HTTP** (API Gateway / Function URL events, anything with ``requestContext``): Restate's admin
  API, through Mangum.
* **CloudFormation custom resource** (``RequestType`` + ``ResponseURL``): ``Custom::Deployment``
  resources in ``template.yaml`` register a handler function's *version* ARN on create and update
  (a new version is a new deployment), so ``sam deploy`` alone makes handlers callable. Delete
  leaves the registry alone (the stack's table goes with the stack; a removed resource in a kept
  stack leaves a deployment that can be removed through the admin API). The answer is PUT to the
  pre-signed ``ResponseURL``; any failure is reported as ``FAILED`` with its reason, never left
  hanging.
* **Direct invocation** ``{"register": {"arn": ..., "assume_role_arn"?, "force"?}}`` or
  ``{"list": "deployments"|"services"}``: for the command line, guarded by the caller's IAM
  permission to invoke the function::

      aws lambda invoke --function-name STACK-AdminFunction-XYZ \\
          --cli-binary-format raw-in-base64-out \\
          --payload '{"register": {"arn": "arn:aws:lambda:...:function:greeter:3"}}' out.json
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from invoker.api import EngineError
from invoker.engine import Engine

_T = TypeVar("_T")


class AwsRuntime(Protocol):
    """What admin events need of :class:`infra.aws_runtime.AwsRuntime` (a protocol, so that
    the two modules do not import each other)."""

    def admin_http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Answer an HTTP event with the admin API."""
        ...

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the sandbox's loop."""
        ...

    async def ready(self) -> Engine:
        """The started engine."""
        ...


log = logging.getLogger("restate_lambda.admin")


def handle_admin_event(runtime: AwsRuntime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Route one admin-function event by its shape."""
    if "requestContext" in event:
        return runtime.admin_http(event, context)
    if "RequestType" in event and "ResponseURL" in event:
        return custom_resource(runtime, event)
    return runtime.run(_direct(runtime, event))


async def _direct(runtime: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    engine = await runtime.ready()
    try:
        if "register" in event:
            spec = event["register"]
            if not isinstance(spec, dict) or not isinstance(spec.get("arn"), str):
                return {"error": 'give {"register": {"arn": "arn:aws:lambda:...:VERSION"}}'}
            deployment, created = await engine.register_deployment(
                arn=spec["arn"],
                assume_role_arn=spec.get("assume_role_arn"),
                force=bool(spec.get("force", False)),
            )
            return {"created": created, "deployment": deployment}
        what = event.get("list")
        if what == "deployments":
            return {"deployments": await engine.list_deployments()}
        if what == "services":
            return {"services": await engine.list_services()}
    except EngineError as exc:
        return {"error": exc.message, "status": exc.status}
    return {"error": 'unknown admin event: expected {"register": {...}} or {"list": ...}'}


def custom_resource(runtime: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Handle a ``Custom::Deployment`` lifecycle event and report to CloudFormation."""
    props = event.get("ResourceProperties") or {}
    physical = str(event.get("PhysicalResourceId") or props.get("Arn") or "unregistered")
    status, reason, data = "SUCCESS", "", {}
    try:
        if event["RequestType"] in ("Create", "Update"):
            arn = props.get("Arn")
            if not isinstance(arn, str):
                raise ValueError("Custom::Deployment needs the property Arn (a version ARN)")
            result = runtime.run(
                _register(runtime, arn, props.get("AssumeRoleArn"), str(props.get("Force", "")))
            )
            physical, data = arn, {"DeploymentId": str(result["id"])}
    except Exception as exc:  # any failure must reach CloudFormation, or the stack hangs
        log.exception("custom resource %s failed", event.get("LogicalResourceId"))
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:900]
    answer = {
        "Status": status,
        "Reason": reason or "ok",
        "PhysicalResourceId": physical,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "Data": data,
    }
    send_cfn_response(str(event["ResponseURL"]), answer)
    return answer


async def _register(
    runtime: AwsRuntime, arn: str, assume_role_arn: Any, force: str
) -> dict[str, Any]:
    engine = await runtime.ready()
    try:
        deployment, _created = await engine.register_deployment(
            arn=arn,
            assume_role_arn=assume_role_arn if isinstance(assume_role_arn, str) else None,
            force=force.lower() in ("true", "1", "yes"),
        )
    except EngineError as exc:
        raise RuntimeError(f"registering {arn} failed ({exc.status}): {exc.message}") from exc
    return deployment


def send_cfn_response(url: str, answer: dict[str, Any]) -> None:
    """PUT the custom resource's answer to CloudFormation's pre-signed URL."""
    body = json.dumps(answer).encode()
    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"content-type": "", "content-length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
