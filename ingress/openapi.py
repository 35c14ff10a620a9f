"""An OpenAPI 3.1 description of the ingress and admin APIs (``GET /openapi.json``, admin port).

Hand-written from the route tables of :mod:`ingress.paths` and :mod:`ingress.admin_app`; a test
checks that every route of the admin app is described and the fuzz suite drives requests from
it. Both APIs are in one document: each path has ``x-api`` (``ingress`` or ``admin``) and
path-level ``servers`` naming the port it is served on. Admin paths are also served under
``/v2``, ``/v3`` and ``/v4``.
"""

from __future__ import annotations

from typing import Any

JsonDict = dict[str, Any]

_INVOCATION_ID = {
    "type": "string",
    "pattern": "^inv_1[0-9A-Za-z]{33}$",
    "description": "an invocation id, `inv_1` + 33 base62 characters",
}
_AWAKEABLE_ID = {
    "type": "string",
    "pattern": "^(sign|prom)_1[0-9A-Za-z_-]+$",
    "description": "`sign_1` + base64url(invocation id bytes + u32 signal index >= 17)",
}
_NAME = {"type": "string", "minLength": 1}
_KEY = {"type": "string", "description": "object or workflow key (URL-encoded, at most 1 KiB)"}

_INGRESS_ERROR: JsonDict = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "source": {"type": "string", "enum": ["ingress", "invocation"]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_ADMIN_ERROR: JsonDict = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "restate_code": {"type": ["string", "null"]}},
}
_LOOKUP_BODY: JsonDict = {
    "oneOf": [
        {
            "type": "object",
            "required": ["target", "invocationId"],
            "properties": {"target": {"const": "invocation"}, "invocationId": _INVOCATION_ID},
        },
        {
            "type": "object",
            "required": ["target", "workflowName", "workflowKey"],
            "properties": {
                "target": {"const": "workflow"},
                "workflowName": _NAME,
                "workflowKey": _KEY,
            },
        },
        {
            "type": "object",
            "required": ["target", "service", "handler", "idempotencyKey"],
            "properties": {
                "target": {"const": "idempotentInvocation"},
                "service": _NAME,
                "key": _KEY,
                "handler": _NAME,
                "idempotencyKey": {"type": "string", "minLength": 1},
            },
        },
    ]
}
_REGISTER_BODY: JsonDict = {
    "type": "object",
    "description": "`uri` (http or https) xor `arn` (a versioned Lambda function ARN)",
    "properties": {
        "uri": {"type": "string", "format": "uri"},
        "arn": {"type": "string"},
        "additional_headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "assume_role_arn": {"type": "string"},
        "use_http_11": {"type": "boolean"},
        "force": {"type": "boolean"},
        "breaking": {"type": "boolean"},
        "dry_run": {"type": "boolean"},
    },
}
_QUERY_BODY: JsonDict = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string"}},
}
_STATE_BODY: JsonDict = {
    "type": "object",
    "required": ["object_key", "new_state"],
    "properties": {
        "object_key": {"type": "string"},
        "version": {"type": ["string", "null"], "description": "hash of the expected state"},
        "new_state": {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 255},
            },
        },
    },
}


def _param(name: str, schema: JsonDict, where: str = "path", required: bool = True) -> JsonDict:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _errors(api: str, *statuses: int) -> JsonDict:
    ref = "#/components/schemas/" + ("IngressError" if api == "ingress" else "AdminError")
    content = {"application/json": {"schema": {"$ref": ref}}}
    return {str(s): {"description": _REASONS.get(s, "error"), "content": content} for s in statuses}


_REASONS = {
    400: "bad request",
    401: "missing or invalid bearer token",
    403: "Host or Origin refused",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    410: "gone: the journal (and so the input) was purged",
    413: "body too large",
    414: "URL too long",
    415: "body is not application/json",
    431: "headers too large",
    470: "the invocation has not completed yet",
    501: "the SQL engine (the `sql` extra) is not installed",
}


def _op(
    api: str,
    summary: str,
    *,
    params: list[JsonDict] | None = None,
    body: JsonDict | None = None,
    body_type: str = "application/json",
    ok: dict[str, str] | None = None,
    errors: tuple[int, ...] = (400, 404),
) -> JsonDict:
    op: JsonDict = {"summary": summary, "parameters": params or []}
    if body is not None:
        op["requestBody"] = {"required": False, "content": {body_type: {"schema": body}}}
    responses: JsonDict = {
        status: {"description": text} for status, text in (ok or {"200": "success"}).items()
    }
    common = (413, 414, 431) if api == "ingress" else (401, 403, 415)
    responses.update(_errors(api, *sorted(set(errors) | set(common))))
    op["responses"] = responses
    return op


def _handler_call(summary: str, send: bool) -> JsonDict:
    params = [_param("idempotency-key", {"type": "string"}, "header", False)]
    if send:
        params.append(
            _param(
                "delay",
                {"type": "string", "description": "humantime (`10s`) or ISO-8601 (`PT10S`)"},
                "query",
                False,
            )
        )
    ok = {"202": "accepted"} if send else {"200": "the handler's output"}
    return _op(
        "ingress",
        summary,
        params=params,
        body={"description": "the handler's input, of its content type (usually JSON)"},
        body_type="*/*",
        ok=ok,
        errors=(400, 404, 409),
    )


def _ingress_paths() -> dict[str, JsonDict]:
    svc, key, handler = (
        _param("service", _NAME),
        _param("key", _KEY),
        _param("handler", _NAME),
    )
    inv = _param("invocationId", _INVOCATION_ID)
    idem = _param("idempotencyKey", {"type": "string", "minLength": 1})
    wf, wf_key = _param("workflow", _NAME), _param("workflowKey", _KEY)
    awk = _param("awakeableId", _AWAKEABLE_ID)
    read = {"200": "the output", "470": "not completed yet"}
    paths: dict[str, JsonDict] = {
        "/restate/health": {"get": _op("ingress", "health", ok={"200": "serving"}, errors=())},
    }
    for verb in ("call", "send"):
        send = verb == "send"
        for shape, ps in (
            ("{service}/{handler}", [svc, handler]),
            ("{service}/{key}/{handler}", [svc, key, handler]),
        ):
            item: JsonDict = {"parameters": ps, "post": _handler_call(f"{verb} a handler", send)}
            if not send:
                item["get"] = _op("ingress", "call a handler without input", errors=(400, 404))
            paths[f"/restate/{verb}/{shape}"] = item
    paths["/{service}/{handler}"] = {
        "parameters": [svc, handler],
        "post": _handler_call("call a service handler (legacy path)", False),
        "get": _op("ingress", "call a handler without input (legacy path)"),
    }
    paths["/{service}/{handler}/send"] = {
        "parameters": [svc, handler],
        "post": _handler_call("send to a service handler (legacy path)", True),
    }
    paths["/{service}/{key}/{handler}"] = {
        "parameters": [svc, key, handler],
        "post": _handler_call("call an object or workflow handler (legacy path)", False),
    }
    paths["/{service}/{key}/{handler}/send"] = {
        "parameters": [svc, key, handler],
        "post": _handler_call("send to an object or workflow handler (legacy path)", True),
    }
    for mode in ("attach", "output"):
        summary = "wait for the outcome" if mode == "attach" else "the outcome, 470 if running"
        get = _op("ingress", summary, ok=read, errors=(400, 404, 470))
        paths[f"/restate/{mode}/{{invocationId}}"] = {"parameters": [inv], "get": get}
        paths[f"/restate/invocation/{{invocationId}}/{mode}"] = {"parameters": [inv], "get": get}
        paths[f"/restate/invocation/{{service}}/{{handler}}/{{idempotencyKey}}/{mode}"] = {
            "parameters": [svc, handler, idem],
            "get": get,
        }
        paths[f"/restate/invocation/{{service}}/{{key}}/{{handler}}/{{idempotencyKey}}/{mode}"] = {
            "parameters": [svc, key, handler, idem],
            "get": get,
        }
        paths[f"/restate/workflow/{{workflow}}/{{workflowKey}}/{mode}"] = {
            "parameters": [wf, wf_key],
            "get": get,
        }
    for mode in ("attach", "output", "lookup"):
        ok = {"200": "`{invocationId}`" if mode == "lookup" else "the output"}
        paths[f"/restate/{mode}"] = {
            "post": _op(
                "ingress", f"{mode} by target", body=_LOOKUP_BODY, ok=ok, errors=(400, 404, 470)
            )
        }
    for prefix in ("awakeables", "a"):
        for action in ("resolve", "reject"):
            paths[f"/restate/{prefix}/{{awakeableId}}/{action}"] = {
                "parameters": [awk],
                "post": _op(
                    "ingress",
                    f"{action} an awakeable",
                    body={"description": "JSON value (resolve) or text reason (reject)"},
                    body_type="*/*",
                    ok={"202": "accepted"},
                    errors=(400,),
                ),
            }
    header = {"type": "string"}
    paths["/restate-lambda/checkpoint"] = {
        "post": _op(
            "ingress",
            "a handler's checkpoint: make its steps durable mid-attempt (restate-lambda)",
            params=[
                _param("x-restate-invocation-id", header, "header", True),
                _param("x-restate-checkpoint-token", header, "header", True),
                _param(
                    "x-restate-journal-index",
                    {"type": "string", "pattern": "^[0-9]+$"},
                    "header",
                    True,
                ),
            ],
            body={"description": "framed service-protocol messages"},
            body_type="application/vnd.restate.invocation.v5",
            ok={"200": "durable; framed notifications journaled ahead of the batch"},
            errors=(400, 409),
        )
    }
    return paths


def _admin_paths() -> dict[str, JsonDict]:
    dep, svc = _param("deployment", {"type": "string"}), _param("service", _NAME)
    handler, inv = _param("handler", _NAME), _param("invocationId", _INVOCATION_ID)
    action = _param(
        "action", {"type": "string", "enum": ["cancel", "kill", "purge", "pause", "resume"]}
    )
    flag = {"type": "string", "enum": ["true", "false"]}
    return {
        "/health": {"get": _op("admin", "health (no token needed)", errors=())},
        "/version": {"get": _op("admin", "version and admin API versions", errors=())},
        "/openapi.json": {"get": _op("admin", "this document", errors=())},
        "/deployments": {
            "get": _op("admin", "list deployments", errors=()),
            "post": _op(
                "admin",
                "register a deployment (discovery)",
                body=_REGISTER_BODY,
                ok={"201": "registered", "200": "already registered"},
                errors=(400, 409, 413, 422),
            ),
        },
        "/deployments/{deployment}": {
            "parameters": [dep],
            "get": _op("admin", "one deployment"),
            "delete": _op(
                "admin",
                "remove a deployment",
                params=[_param("force", flag, "query", False)],
                ok={"202": "removed"},
                errors=(400, 404),
            ),
        },
        "/services": {"get": _op("admin", "list services", errors=())},
        "/services/{service}": {"parameters": [svc], "get": _op("admin", "one service")},
        "/services/{service}/state": {
            "parameters": [svc],
            "post": _op(
                "admin",
                "replace a virtual object's or workflow's state (key not busy)",
                body=_STATE_BODY,
                ok={"202": "replaced"},
                errors=(400, 404, 409, 413, 422),
            ),
        },
        "/services/{service}/handlers": {
            "parameters": [svc],
            "get": _op("admin", "a service's handlers"),
        },
        "/services/{service}/handlers/{handler}": {
            "parameters": [svc, handler],
            "get": _op("admin", "one handler"),
        },
        "/invocations": {
            "get": _op(
                "admin",
                "invocation rows, newest first (restate-lambda extension)",
                params=[
                    _param("all", flag, "query", False),
                    _param("limit", {"type": "integer", "minimum": 0}, "query", False),
                ],
                errors=(400,),
            )
        },
        "/invocations/{invocationId}": {
            "parameters": [inv],
            "get": _op("admin", "one invocation and its journal (extension)"),
            "delete": _op(
                "admin",
                "deprecated: cancel, kill or purge",
                params=[
                    _param(
                        "mode",
                        {"type": "string", "enum": ["cancel", "kill", "purge"]},
                        "query",
                        False,
                    )
                ],
                ok={"202": "accepted"},
                errors=(400, 404, 409),
            ),
        },
        "/invocations/{invocationId}/{action}": {
            "parameters": [inv, action],
            "patch": _op(
                "admin",
                "cancel, kill, purge, purge-journal, pause, resume (`?deployment=`) or "
                "restart-as-new (`?from=&deployment=`: `{new_invocation_id}`)",
                ok={"200": "done", "202": "accepted"},
                errors=(400, 404, 409, 410),
            ),
        },
        **_event_paths(),
        "/query": {
            "post": _op(
                "admin",
                "SQL over the system tables (sys_invocation, sys_journal, state, ...): "
                "an Arrow IPC stream, or `{rows}` JSON with `accept: application/json`",
                body=_QUERY_BODY,
                errors=(400, 413, 422, 501),
            )
        },
    }


def _event_paths() -> dict[str, JsonDict]:
    """Cron schedules (an extension) and Restate's event subscriptions."""
    sched = _param("schedule", {"type": "string"})
    op = _param("op", {"type": "string", "enum": ["pause", "resume"]})
    sub = _param("subscription", {"type": "string", "pattern": "^sub_1[0-9A-Za-z]{22}$"})
    schedule_body: JsonDict = {
        "type": "object",
        "required": ["id", "cron", "target"],
        "properties": {
            "id": {"type": "string"},
            "cron": {"type": "string", "description": "5 or 6 fields, or @hourly, @daily, ..."},
            "target": {"type": "string", "description": "Service/handler or Object/key/handler"},
            "timezone": {"type": "string", "default": "UTC"},
            "body": {"description": "JSON input of every tick"},
            "missed_ticks": {"type": "string", "enum": ["catch-up", "skip"]},
            "max_catch_up": {"type": "integer", "minimum": 1, "maximum": 10000},
            "paused": {"type": "boolean"},
        },
    }
    sub_body: JsonDict = {
        "type": "object",
        "required": ["source", "sink"],
        "properties": {
            "source": {
                "type": "string",
                "description": "kafka://CLUSTER/TOPIC, sqs://QUEUE, kinesis://STREAM, "
                "dynamodb://TABLE",
            },
            "sink": {"type": "string", "description": "service://Service/handler"},
            "options": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    return {
        "/schedules": {
            "get": _op("admin", "cron schedules (restate-lambda extension)", errors=()),
            "post": _op(
                "admin",
                "create a cron schedule",
                body=schedule_body,
                ok={"201": "created", "200": "the same schedule exists"},
                errors=(400, 404, 409, 422),
            ),
        },
        "/schedules/{schedule}": {
            "parameters": [sched],
            "get": _op("admin", "one schedule"),
            "delete": _op("admin", "delete a schedule", ok={"202": "deleted"}),
        },
        "/schedules/{schedule}/{op}": {
            "parameters": [sched, op],
            "patch": _op("admin", "pause or resume a schedule", errors=(400, 404, 409)),
        },
        "/subscriptions": {
            "get": _op("admin", "event subscriptions", errors=()),
            "post": _op(
                "admin",
                "create a subscription",
                body=sub_body,
                ok={"201": "created"},
                errors=(400, 422),
            ),
        },
        "/subscriptions/{subscription}": {
            "parameters": [sub],
            "get": _op("admin", "one subscription"),
            "delete": _op("admin", "delete a subscription", ok={"202": "deleted"}),
        },
    }


def openapi_document(ingress_url: str, admin_url: str | None = None) -> JsonDict:
    """The OpenAPI 3.1 document; ``ingress_url``/``admin_url`` fill the ``servers`` entries."""
    paths: dict[str, JsonDict] = {}
    for api, table, url in (
        ("ingress", _ingress_paths(), ingress_url),
        ("admin", _admin_paths(), admin_url or "/"),
    ):
        for path, item in table.items():
            assert path not in paths, path
            paths[path] = {"x-api": api, "servers": [{"url": url}], **item}
            if api == "admin":
                for method in ("get", "post", "put", "patch", "delete"):
                    if method in item:
                        item[method]["security"] = [{}, {"adminToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "restate-lambda ingress and admin APIs",
            "version": "1.7.12",
            "description": (
                "Restate's ingress (port 8080) and admin (port 9070) HTTP APIs as restate-lambda "
                "serves them. Each path names its API in `x-api` and its port in `servers`. "
                "Admin paths are also served under /v2, /v3 and /v4. Ingress errors are "
                "`{code, message, source}`; admin errors `{message, restate_code}`."
            ),
        },
        "servers": [{"url": admin_url or "/"}],
        "paths": paths,
        "components": {
            "schemas": {"IngressError": _INGRESS_ERROR, "AdminError": _ADMIN_ERROR},
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required when the admin API has a token "
                    "(--admin-token / RESTATE_LAMBDA_ADMIN_TOKEN)",
                }
            },
        },
    }
