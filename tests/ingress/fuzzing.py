"""Hypothesis strategies for requests, driven by the OpenAPI document of ``/openapi.json``.

Every documented operation becomes a strategy of :class:`FuzzRequest`: path parameters, query
parameters, headers and bodies drawn from the parameter's schema, from a pool of values the
runtime knows (services, handlers, real invocation ids) and from hostile values (path
traversal, NUL, unicode, forged ids of the right shape, huge strings, random bytes).
Nothing here reaches beyond 127.0.0.1: deployment URIs and ARNs come from a fixed safe pool.
"""

from __future__ import annotations

import base64
import json
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from restate_lambda.protocol.ids import AwakeableId, InvocationId

_BASE62 = string.digits + string.ascii_letters

HOSTILE_TEXT = [
    "",
    " ",
    "..",
    "../",
    "../../etc/passwd",
    "..%2F..%2F",
    "%2e%2e%2f",
    "..\\..\\",
    "\x00",
    "a\x00b",
    "%00",
    "%",
    "%zz",
    "é",
    "😀",
    "\u202e\u0644",
    "\ud7ff",
    "\ufffe",
    "a" * 1025,
    "b" * 5000,
    "inv_1",
    "sign_1",
    "null",
    "{}",
    "[]",
    "Greeter/../Counter",
    "restate",
    "send",
    "?x=1",
    "#frag",
    "\r\nx-injected: 1",
]

SERVICES = ["Greeter", "Counter", "Caller", "Internal", "Vault", "Hidden", "Awaiter", "Nope"]
HANDLERS = [
    "greet",
    "echo",
    "add",
    "get",
    "secret",
    "send_private",
    "open_wait",
    "awakeable_id",
    "run",
    "published",
    "start_private_workflow",
    "nope",
]
#: never ``sentinel`` (the fuzz checks that key's state is unchanged)
KEYS = ["k1", "k2", "fuzz", "é", "a/b", "a%2Fb"]

SAFE_URIS = [
    "http://[::1",
    "http://127.0.0.1:9/",
    "http://127.0.0.1:0/",
    "http://localhost:99999/",
    "ftp://127.0.0.1/",
    "127.0.0.1:9",
    "",
    "\x00",
    "http://",
    "//x",
    "http://127.0.0.1:9/" + "a" * 3000,
]
SAFE_ARNS = ["arn:garbage", "arn:aws:lambda", "", "arn:aws:lambda:x:y:function", "\x00"]


@dataclass
class Known:
    """Values of the runtime under test the fuzzer may aim at (ids of real invocations)."""

    invocation_ids: list[str] = field(default_factory=list)


@dataclass
class FuzzRequest:
    """One request to send."""

    api: str  # "ingress" | "admin"
    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def describe(self) -> str:
        """A short form for failure messages."""
        return (
            f"{self.api} {self.method} {self.path[:200]} q={self.query!r:.80} b={self.body[:80]!r}"
        )


def forged_invocation_ids() -> st.SearchStrategy[str]:
    """Ids of the right shape that name no invocation (or a derived one)."""
    return st.one_of(
        st.text(alphabet=_BASE62, min_size=33, max_size=33).map(lambda s: "inv_1" + s),
        st.binary(min_size=24, max_size=24).map(lambda b: str(InvocationId.from_bytes(b))),
        st.text(alphabet=_BASE62, min_size=0, max_size=40).map(lambda s: "inv_" + s),
    )


def awakeable_ids(known: Known) -> st.SearchStrategy[str]:
    """Forged awakeable ids: random bytes, built-in signal indexes, real invocations."""
    raw = st.binary(min_size=28, max_size=28).map(
        lambda b: "sign_1" + base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    )
    invocations = st.one_of(forged_invocation_ids(), st.sampled_from(known.invocation_ids or ["x"]))

    def build(inv: str, index: int, legacy: bool) -> str:
        try:
            return str(AwakeableId(InvocationId.parse(inv), index, legacy=legacy))
        except ValueError:
            return "sign_1" + inv

    structured = st.builds(build, invocations, st.integers(0, 40), st.booleans())
    return st.one_of(raw, structured, st.sampled_from(HOSTILE_TEXT))


def _path_value(name: str, schema: dict[str, Any], known: Known) -> st.SearchStrategy[str]:
    hostile = st.sampled_from(HOSTILE_TEXT)
    anything = st.text(max_size=30)
    if name == "service" or name == "workflow":
        return st.one_of(st.sampled_from(SERVICES), hostile, anything)
    if name == "handler":
        return st.one_of(st.sampled_from(HANDLERS), hostile, anything)
    if name in ("key", "workflowKey", "idempotencyKey"):
        return st.one_of(st.sampled_from(KEYS), hostile, anything)
    if name == "invocationId":
        return st.one_of(
            st.sampled_from(known.invocation_ids or ["inv_1"]), forged_invocation_ids(), hostile
        )
    if name == "awakeableId":
        return awakeable_ids(known)
    if name == "action" and "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), hostile)
    return st.one_of(hostile, anything)


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(HOSTILE_TEXT),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for the JSON-Schema subset the document uses, sometimes off-schema."""
    if "oneOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema["oneOf"]))
    if "const" in schema:
        return st.one_of(st.just(schema["const"]), st.sampled_from(HOSTILE_TEXT))
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), json_values())
    kind = schema.get("type")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        if not props:
            return st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
        required = st.fixed_dictionaries({k: from_schema(v) for k, v in props.items()})
        return st.one_of(
            required,
            st.fixed_dictionaries({}, optional={k: from_schema(v) for k, v in props.items()}),
            json_values(),
        )
    if kind == "string":
        return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT))
    if kind == "boolean":
        return st.one_of(st.booleans(), json_values())
    if kind == "integer":
        return st.one_of(st.integers(-(2**70), 2**70), json_values())
    return json_values()


def _json_body(schema: dict[str, Any]) -> st.SearchStrategy[bytes]:
    def encode(value: Any) -> bytes:
        return json.dumps(value).encode()

    return st.one_of(from_schema(schema).map(encode), hostile_bodies())


def _register_body() -> st.SearchStrategy[bytes]:
    """``POST /deployments`` bodies whose URIs and ARNs never leave 127.0.0.1."""
    target = st.one_of(
        st.fixed_dictionaries({"uri": st.sampled_from(SAFE_URIS)}),
        st.fixed_dictionaries({"arn": st.sampled_from(SAFE_ARNS)}),
        st.fixed_dictionaries(
            {"uri": st.sampled_from(SAFE_URIS), "arn": st.sampled_from(SAFE_ARNS)}
        ),
        st.just({}),
    )
    extras = st.fixed_dictionaries(
        {},
        optional={
            "force": json_values(),
            "dry_run": json_values(),
            "additional_headers": json_values(),
            "use_http_11": st.booleans(),
        },
    )
    combined = st.builds(lambda a, b: {**b, **a}, target, extras)
    return st.one_of(combined.map(lambda v: json.dumps(v).encode()), hostile_bodies())


def hostile_bodies() -> st.SearchStrategy[bytes]:
    """Random bytes, invalid UTF-8, deep nesting, big blobs."""
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"\xff\xfe\x00",
                b"[" * 5000,
                b"[" * 2000 + b"]" * 2000,
                b'{"a":' * 3000,
                b'"' + b"x" * 70_000 + b'"',
                b"\x00" * 100,
                b'{"target": "invocation", "invocationId": "inv_1' + b"A" * 33 + b'"}',
                b"null",
                b"1e999999",
                b"-" * 10_000,
            ]
        ),
    )


def _body(api: str, path: str, op: dict[str, Any]) -> st.SearchStrategy[bytes]:
    content = op.get("requestBody", {}).get("content", {})
    if api == "admin" and path == "/deployments":
        return _register_body()
    for media, spec in content.items():
        schema = spec.get("schema", {})
        if media == "application/json" and ("type" in schema or "oneOf" in schema):
            return _json_body(schema)
    return st.one_of(json_values().map(lambda v: json.dumps(v).encode()), hostile_bodies())


#: CR, LF and NUL never reach an app in a header (HTTP servers refuse them); drop them.
_NO_CONTROL = {ord("\r"): None, ord("\n"): None, ord("\x00"): None}

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    "a" * 300,
    "application/json\x00",
]


def request_strategy(
    document: dict[str, Any], known: Known, token: str
) -> st.SearchStrategy[FuzzRequest]:
    """One request for any documented operation (the operation is drawn first)."""
    operations: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
    for path, item in document["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                operations.append((path, method, item, item[method]))

    @st.composite
    def build(draw: st.DrawFn) -> FuzzRequest:
        path, method, item, op = draw(st.sampled_from(operations))
        api = item["x-api"]
        params = [*item.get("parameters", []), *op.get("parameters", [])]
        concrete = path
        query: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        for param in params:
            name, where = param["name"], param["in"]
            if where == "path":
                value = draw(_path_value(name, param.get("schema", {}), known))
                encoded = (
                    value if draw(st.booleans()) and "\r" not in value else quote(value, safe="")
                )
                concrete = concrete.replace("{" + name + "}", encoded)
            elif where == "query" and draw(st.booleans()):
                enum = param.get("schema", {}).get("enum")
                choices = [st.sampled_from(HOSTILE_TEXT), st.text(max_size=20)]
                if name == "delay":
                    choices.append(
                        st.sampled_from(
                            ["10s", "PT1S", "9" * 50, "P" + "9" * 50 + "D", "1ms", "-1s", "1.5h"]
                        )
                    )
                if enum:
                    choices.append(st.sampled_from(enum))
                query.append((name, draw(st.one_of(*choices))))
            elif where == "header" and draw(st.booleans()):
                headers[name] = draw(
                    st.one_of(
                        st.sampled_from(HOSTILE_TEXT),
                        st.text(alphabet=string.printable.strip(), max_size=30),
                    )
                )
        if draw(st.integers(0, 9)) == 0:  # a wrong method now and then
            method = draw(st.sampled_from(["get", "post", "put", "patch", "delete", "options"]))
        body = b""
        if method in ("post", "put", "patch") and draw(st.integers(0, 4)) > 0:
            body = draw(_body(api, path, op))
        if body or draw(st.booleans()):
            content_type = draw(st.sampled_from(CONTENT_TYPES))
            if content_type:
                headers["content-type"] = content_type
        if api == "admin":
            auth = draw(st.integers(0, 9))
            if auth < 7:
                headers["authorization"] = f"Bearer {token}"
            elif auth == 7:
                headers["authorization"] = "Bearer " + draw(
                    st.text(max_size=10).map(lambda s: s.encode("ascii", "ignore").decode())
                )
            if draw(st.integers(0, 9)) == 0:
                headers["origin"] = draw(
                    st.sampled_from(["http://evil.example", "null", "http://127.0.0.1:9070"])
                )
            if draw(st.integers(0, 9)) == 0:
                headers["host"] = draw(st.sampled_from(["evil.example", "127.0.0.1:9070", ""]))
        clean = {k: v.translate(_NO_CONTROL) for k, v in headers.items()}
        return FuzzRequest(api, method.upper(), concrete, query, clean, body)

    return build()
