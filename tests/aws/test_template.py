"""``template.yaml``: its table is the provisioning code's, it lints, translates and builds.

cfn-lint runs from this venv when it can (moto depends on it); ``sam validate --lint``, the
aws-sam-translator translation and ``sam build`` need the SAM CLI tool venv at
``.tools/sam-venv`` (``scripts/setup.sh``); those tests skip with the install command otherwise.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.provision import table_definition

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAM_VENV = REPO / ".tools" / "sam-venv"
SAM_INSTALL = "python3.12 -m venv .tools/sam-venv && .tools/sam-venv/bin/pip install aws-sam-cli"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref x`` -> ``{"Ref": "x"}``)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return loaded


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"/root/.pyenv/versions/3.12.1/bin:{os.environ.get('PATH', '')}",
    }


def _sam_tool(name: str) -> Path:
    tool = SAM_VENV / "bin" / name
    if not tool.exists():
        pytest.skip(f"{tool} missing; install the SAM CLI tool venv: {SAM_INSTALL}")
    return tool


def test_table_is_the_provisioned_one() -> None:
    resource = template()["Resources"]["Table"]
    expected = table_definition()
    assert resource["Type"] == expected["Type"]
    props = dict(resource["Properties"])
    extras = {"PointInTimeRecoverySpecification"}  # allowed: the engine does not depend on it
    assert {k: v for k, v in props.items() if k not in extras} == expected["Properties"]


def test_handlers_exist() -> None:
    """Every function's ``Handler`` names an importable attribute of the deployed code."""
    resources = template()["Resources"]
    handlers = [
        r["Properties"]["Handler"]
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
    ]
    assert "infra.lambdas.worker_handler" in handlers
    code = REPO / template()["Globals"]["Function"]["CodeUri"]
    for handler in handlers:
        module, _, attr = handler.rpartition(".")
        assert (code / module.split(".")[0]).resolve().is_dir(), f"{module} not in {code}"
        assert hasattr(importlib.import_module(module), attr), handler


def test_cfn_lint() -> None:
    venv_lint = REPO / ".venv" / "bin" / "cfn-lint"
    lint = venv_lint if venv_lint.exists() else _sam_tool("cfn-lint")
    done = subprocess.run(
        [str(lint), str(TEMPLATE)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sam_translation() -> None:
    python = _sam_tool("python")
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("sam_translate.py")), str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    resources = json.loads(done.stdout)["Resources"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources.values():
        by_type.setdefault(r["Type"], []).append(r)
    mappings = by_type["AWS::Lambda::EventSourceMapping"]
    (mapping,) = [m for m in mappings if "Condition" not in m]  # the work queue's
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The event sources of subscriptions: one optional mapping each, partial batch responses.
    optional = {m["Condition"]: m["Properties"] for m in mappings if "Condition" in m}
    msk = {"EventsFromMsk", "EventsFromMskTopic2", "EventsFromMskTopic3"}
    assert set(optional) == {"EventsFromSqs", "EventsFromKinesis", "EventsFromDynamoDb", *msk}
    for condition, props in optional.items():
        if condition in msk:  # Kafka batches are retried whole (see test_msk_mappings)
            assert "FunctionResponseTypes" not in props, condition
        else:
            assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (rule,) = by_type["AWS::Events::Rule"]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (url,) = by_type["AWS::Lambda::Url"]
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    apis = {r["Condition"] for r in by_type["AWS::ApiGatewayV2::Api"]}
    assert apis == {"PublicAuth", "IamAuth", "JwtAuth"}  # exactly one exists per deployment
    for permission in by_type["AWS::Lambda::Permission"]:
        if "execute-api" in json.dumps(permission["Properties"]):
            assert permission.get("Condition") in ("PublicAuth", "IamAuth", "JwtAuth")
    # SAM writes the JWT authorizer into the API's OpenAPI body, and requires it on the route.
    (jwt_api,) = (r for r in by_type["AWS::ApiGatewayV2::Api"] if r["Condition"] == "JwtAuth")
    body = jwt_api["Properties"]["Body"]
    scheme = body["components"]["securitySchemes"]["OidcAuthorizer"]
    assert scheme["x-amazon-apigateway-authorizer"]["type"] == "jwt"
    assert scheme["x-amazon-apigateway-authorizer"]["jwtConfiguration"] == {
        "audience": {"Ref": "JwtAudience"},
        "issuer": {"Ref": "JwtIssuer"},
    }
    assert '"security": [{"OidcAuthorizer": []}]' in json.dumps(body["paths"])
    _assert_least_privilege(resources)
    _assert_msk_only_with_a_cluster(json.loads(done.stdout))
    assert "Custom::RestateDeployment" in by_type
    assert "AWS::Lambda::Alias" in by_type  # the greeter publishes versions


def test_sam_validate_lint() -> None:
    sam = _sam_tool("sam")
    done = subprocess.run(
        [str(sam), "validate", "--lint", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


@pytest.mark.slow
def test_sam_build(tmp_path: Path) -> None:
    """``sam build`` (no container): arm64 wheels for every function, our packages included."""
    sam = _sam_tool("sam")
    if shutil.which("python3.12", path=_env()["PATH"]) is None:
        pytest.skip("sam build needs a python3.12 on PATH")
    done = subprocess.run(
        [
            str(sam),
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(tmp_path / "build"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    worker = tmp_path / "build" / "WorkerFunction"
    packages = ("infra", "invoker", "backends", "ingress", "restate_lambda", "mangum")
    for package in (*packages, "cryptography"):
        assert (worker / package).is_dir(), package
    assert list((worker / "msgspec").glob("_core.cpython-312-aarch64-linux-gnu.so"))
    assert (tmp_path / "build" / "GreeterFunction" / "examples" / "greeter.py").is_file()


# --------------------------------------------------------------------------- secure defaults

#: The only AWS managed policy a role may carry: CloudWatch Logs for the function's own logs
#: (SAM attaches it to every function it makes a role for).
_BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
_OUR_POLICIES = (
    {"Ref": "RuntimeStoragePolicy"},
    {"Ref": "InvokeHandlersPolicy"},
    {"Ref": "EventSourcesPolicy"},
    {"Ref": "InvokeCheckpointPolicy"},
)


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a policy document, both branches of a conditional one included."""
    statements = document["Statement"]
    out = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Fn::If" in statement:
            _, then, otherwise = statement["Fn::If"]
            out.extend(s for s in (then, otherwise) if s != {"Ref": "AWS::NoValue"})
        else:
            out.append(statement)
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


#: The one exception to "no ``*`` resource": EC2 Describe* calls have no resource-level
#: permissions (IAM takes them on ``*`` only), and Lambda's MSK pollers need these to find the
#: cluster's subnets and security groups (as ``AWSLambdaMSKExecutionRole`` grants them). A
#: statement with a ``*`` resource must hold these actions and nothing else.
_DESCRIBE_ONLY_ACTIONS = frozenset(
    {
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
    }
)


def _assert_statement_scoped(where: str, statement: dict[str, Any]) -> None:
    """No wildcard action; every resource names one of our resources (never ``*``, but for
    :data:`_DESCRIBE_ONLY_ACTIONS`)."""
    assert statement["Effect"] == "Allow", where
    for action in _as_list(statement["Action"]):
        assert "*" not in action, f"{where}: wildcard action {action}"
    if statement["Resource"] == "*":
        actions = set(_as_list(statement["Action"]))
        assert actions <= _DESCRIBE_ONLY_ACTIONS, f"{where}: resource * for {actions}"
        return
    for resource in _as_list(statement["Resource"]):
        text = json.dumps(resource)
        assert resource != "*", f"{where}: resource *"
        ours = (
            "Table",
            "BlobBucket",
            "WorkQueue",
            ":function:",
            '"CheckpointFunction"',
            ":parameter${RequestIdentityKey",
            # the event sources a deployer names (each its own parameter, no wildcard)
            '"EventsSqsQueueArn"',
            '"EventsKinesisStreamArn"',
            '"EventsDynamoDbStreamArn"',
            '"MskClusterArn"',  # the cluster, and its topics and groups made of its ARN
            # the network interfaces of Lambda's MSK pollers, in this account and region
            ":${AWS::AccountId}:network-interface/*",
            ":${AWS::AccountId}:subnet/*",
            ":${AWS::AccountId}:security-group/*",
        )
        assert any(name in text for name in ours), (
            f"{where}: resource {text} is not the table, the bucket, the queue, a function or "
            "the request-identity key"
        )


def _assert_least_privilege(resources: dict[str, Any]) -> None:
    """Every role and managed policy of a (raw or translated) template is least-privilege."""
    seen_roles = 0
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            for statement in _statements(props["PolicyDocument"]):
                _assert_statement_scoped(name, statement)
        elif resource["Type"] == "AWS::IAM::Role":
            seen_roles += 1
            for arn in props.get("ManagedPolicyArns", []):
                text = json.dumps(arn)
                assert arn in _OUR_POLICIES or "AWSLambdaBasicExecutionRole" in text, (name, arn)
            for policy in props.get("Policies", []):
                for statement in _statements(policy["PolicyDocument"]):
                    _assert_statement_scoped(f"{name}/{policy['PolicyName']}", statement)
        elif resource["Type"] == "AWS::Serverless::Function":
            policies = _as_list(props.get("Policies", []))
            assert all(p in _OUR_POLICIES for p in policies), (name, policies)
    assert seen_roles >= 1


def test_ingress_auth_defaults_to_iam() -> None:
    """A fresh deployment's ingress needs SigV4; JWT (OIDC) is an option; NONE only on request."""
    t = template()
    auth = t["Parameters"]["IngressAuth"]
    assert auth["Default"] == "AWS_IAM"
    assert set(auth["AllowedValues"]) == {"AWS_IAM", "JWT", "NONE"}
    conditions = t["Conditions"]
    assert conditions["PublicAuth"] == {"Fn::Equals": [{"Ref": "IngressAuth"}, "NONE"]}
    assert conditions["IamAuth"] == {"Fn::Equals": [{"Ref": "IngressAuth"}, "AWS_IAM"]}
    assert conditions["JwtAuth"] == {"Fn::Equals": [{"Ref": "IngressAuth"}, "JWT"]}
    resources = t["Resources"]
    assert resources["IngressApi"]["Condition"] == "PublicAuth"
    assert resources["IngressIamApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    jwt_auth = resources["IngressJwtApi"]["Properties"]["Auth"]
    config = jwt_auth["Authorizers"][jwt_auth["DefaultAuthorizer"]]["JwtConfiguration"]
    assert config == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}
    assert "JwtNeedsIssuerAndAudience" in t["Rules"]
    # Every ingress function belongs to exactly one API, under that API's condition.
    for function, api in (
        ("IngressFunction", "IngressApi"),
        ("IngressIamFunction", "IngressIamApi"),
        ("IngressJwtFunction", "IngressJwtApi"),
    ):
        f = resources[function]
        assert f["Condition"] == resources[api]["Condition"]
        assert f["Properties"]["Events"]["Proxy"]["Properties"]["ApiId"] == {"Ref": api}
    url = resources["AdminFunction"]["Properties"]["FunctionUrlConfig"]
    assert url == {"AuthType": "AWS_IAM"}


def test_roles_least_privilege() -> None:
    """No wildcard action, no ``*`` resource; storage access scoped to table, bucket, queue."""
    resources = template()["Resources"]
    _assert_least_privilege(resources)
    storage = resources["RuntimeStoragePolicy"]["Properties"]["PolicyDocument"]
    by_sid = {st["Sid"]: st for st in _statements(storage)}
    assert by_sid["Table"]["Resource"] == [
        {"Fn::GetAtt": ["Table", "Arn"]},
        {"Fn::Sub": "${Table.Arn}/index/*"},
    ]
    assert by_sid["BlobObjects"]["Resource"] == {"Fn::Sub": "${BlobBucket.Arn}/*"}
    assert by_sid["Dispatch"]["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    worker = resources["WorkerFunction"]["Properties"]
    assert worker["Role"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]} and "Policies" not in worker
    # The greeter (a user's handler) gets no access to the runtime's storage: it may only
    # invoke the checkpoint function.
    assert resources["GreeterFunction"]["Properties"]["Policies"] == [
        {"Ref": "InvokeCheckpointPolicy"}
    ]


def test_handlers_may_invoke_the_checkpoint_function_only() -> None:
    """The checkpoint channel: the functions running attempts offer the checkpoint function
    (not themselves), which takes only checkpoint events and writes only to storage; handler
    roles get lambda:InvokeFunction on it and on nothing else of the runtime."""
    t = template()
    resources = t["Resources"]
    checkpoint = resources["CheckpointFunction"]["Properties"]
    assert checkpoint["Handler"] == "infra.lambdas.checkpoint_handler"
    assert checkpoint["Policies"] == [{"Ref": "RuntimeStoragePolicy"}]
    (statement,) = resources["InvokeCheckpointPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Action": "lambda:InvokeFunction",
        "Resource": {"Fn::GetAtt": ["CheckpointFunction", "Arn"]},
    }
    offered = {"Fn::GetAtt": ["CheckpointFunction", "Arn"]}
    for name in ("IngressFunction", "IngressIamFunction", "IngressJwtFunction", "WorkerFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["RESTATE_LAMBDA_CHECKPOINT_URL"] == offered, name
    assert t["Outputs"]["InvokeCheckpointPolicyArn"]["Value"] == {"Ref": "InvokeCheckpointPolicy"}


def test_request_identity_key_is_opt_in_and_read_only_by_callers_of_deployments() -> None:
    """The signing key (an SSM SecureString) is off by default; when named, only the functions
    that call deployments get its name and may read that one parameter."""
    t = template()
    param = t["Parameters"]["RequestIdentityKeyParameter"]
    assert param["Default"] == ""
    assert t["Conditions"]["SignRequests"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "RequestIdentityKeyParameter"}, ""]}]
    }
    import re

    pattern = re.compile(param["AllowedPattern"])
    assert pattern.fullmatch("/restate-lambda/request-identity") and pattern.fullmatch("")
    assert not pattern.fullmatch("no-leading-slash") and not pattern.fullmatch("/a/*")
    resources = t["Resources"]
    callers = {
        "IngressFunction",
        "IngressIamFunction",
        "IngressJwtFunction",
        "WorkerFunction",
        "AdminFunction",
    }
    expected = {"Fn::If": ["SignRequests", {"Fn::Sub": "ssm:${RequestIdentityKeyParameter}"}, ""]}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        key = variables.get("RESTATE_LAMBDA_REQUEST_IDENTITY_KEY")
        assert key == (expected if name in callers else None), name
    assert "RESTATE_LAMBDA_REQUEST_IDENTITY_KEY" not in json.dumps(t["Globals"])
    (conditional,) = [
        s
        for s in resources["InvokeHandlersPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if "Fn::If" in s
    ]
    condition, statement, otherwise = conditional["Fn::If"]
    assert (condition, otherwise) == ("SignRequests", {"Ref": "AWS::NoValue"})
    assert statement["Action"] == "ssm:GetParameter"
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
        ":parameter${RequestIdentityKeyParameter}"
    }
    # every function that reads the key carries the policy that allows it
    worker_role = resources["WorkerRole"]["Properties"]["ManagedPolicyArns"]
    assert {"Ref": "InvokeHandlersPolicy"} in worker_role
    for name in callers - {"WorkerFunction"}:
        assert {"Ref": "InvokeHandlersPolicy"} in resources[name]["Properties"]["Policies"]


# --------------------------------------------------------------------------- MSK (Kafka)

_NO_VALUE = object()
_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "stack",
    "AWS::URLSuffix": "amazonaws.com",
}
CLUSTER = "arn:aws:kafka:us-east-1:123456789012:cluster/orders-cluster/0a1b2c3d-4e5f-1-1"


def deployed(tpl: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The resources of (raw or translated) ``tpl`` as CloudFormation would create them with
    the parameter ``overrides`` (defaults otherwise): conditions evaluated, resources of false
    conditions dropped, ``Fn::If`` / ``AWS::NoValue`` resolved, parameters and pseudo
    parameters substituted (references to resources stay as they are)."""
    params: dict[str, Any] = {n: s.get("Default") for n, s in tpl.get("Parameters", {}).items()}
    params.update(overrides)
    for name, spec in tpl.get("Parameters", {}).items():
        if spec["Type"] == "CommaDelimitedList" and isinstance(params[name], str):
            params[name] = params[name].split(",")
    values = {**_PSEUDO, **params}
    known: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in known:
            known[name] = bool(resolve(tpl["Conditions"][name]))
        return known[name]

    def sub(text: str, variables: dict[str, Any]) -> Any:
        for name, value in {**values, **variables}.items():
            if isinstance(value, str):
                text = text.replace("${" + name + "}", value)
        return text if "${" not in text else {"Fn::Sub": text}

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [r for r in (resolve(n) for n in node) if r is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                return values.get(arg, node)
            if fn in ("Condition", "Fn::Condition") and isinstance(arg, str):
                return condition(arg)
            if fn == "Fn::If":
                name, then, otherwise = arg
                return resolve(then if condition(name) else otherwise)
            if fn == "Fn::Equals":
                a, b = resolve(arg)
                return a == b
            if fn == "Fn::Not":
                return not resolve(arg)[0]
            if fn == "Fn::And":
                return all(resolve(arg))
            if fn == "Fn::Or":
                return any(resolve(arg))
            if fn == "Fn::Join":
                sep, items = resolve(arg)
                if all(isinstance(i, str) for i in items):
                    return sep.join(items)
                return {fn: [sep, items]}
            if fn == "Fn::Split":
                sep, text = resolve(arg)
                return text.split(sep)
            if fn == "Fn::Select":
                index, items = resolve(arg)
                return items[int(index)]
            if fn == "Fn::Sub":
                return sub(arg, {}) if isinstance(arg, str) else sub(arg[0], resolve(arg[1]))
        return {k: v for k, v in ((k, resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}

    return {
        name: resolve({k: v for k, v in r.items() if k != "Condition"})
        for name, r in tpl["Resources"].items()
        if "Condition" not in r or condition(r["Condition"])
    }


def _msk_statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    document = resources["EventSourcesPolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in document["Statement"] if s.get("Sid", "").startswith("Msk")}


def _assert_msk_only_with_a_cluster(tpl: dict[str, Any]) -> None:
    """Without MskClusterArn nothing of MSK exists (nor the events function, with no other
    source); with it, one mapping per topic and the events function's role may reach that
    cluster, those topics and those consumer groups, and nothing else of Kafka."""
    off = deployed(tpl)
    assert "EventsFunction" not in off and "EventSourcesPolicy" not in off
    text = json.dumps(off)
    assert "kafka" not in text and "ec2:" not in text and not any("Msk" in n for n in off)
    other = deployed(tpl, EventsSqsQueueArn="arn:aws:sqs:us-east-1:123456789012:q")
    assert "kafka" not in json.dumps(other) and "ec2:" not in json.dumps(other)
    assert not any("Msk" in n for n in other) and "EventsFunction" in other

    on = deployed(tpl, MskClusterArn=CLUSTER, MskTopics="orders,payments")
    assert "EventsFunction" in on
    mappings = {n: r["Properties"] for n, r in on.items() if n.startswith("MskEvents")}
    assert set(mappings) == {"MskEvents", "MskEvents2"}  # MskEvents3: no third topic
    for name, topic in (("MskEvents", "orders"), ("MskEvents2", "payments")):
        props = mappings[name]
        assert props["EventSourceArn"] == CLUSTER
        assert props["Topics"] == [topic]
        assert props["FunctionName"] == {"Ref": "EventsFunction"}
        assert props["StartingPosition"] == "TRIM_HORIZON"
        group = props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
        assert group == f"stack-events-{topic}"
        # Kafka batches with failures are retried whole: no partial batch response, no bisect
        assert "FunctionResponseTypes" not in props and "BisectBatchOnFunctionError" not in props
    base = "arn:aws:kafka:us-east-1:123456789012"
    path = "orders-cluster/0a1b2c3d-4e5f-1-1"
    by_sid = _msk_statements(on)
    assert set(by_sid) == {
        "MskCluster",
        "MskTopics",
        "MskConsumerGroups",
        "MskNetworkInterfaces",
        "MskNetworkDescribe",
    }
    assert by_sid["MskCluster"]["Resource"] == CLUSTER
    assert set(by_sid["MskCluster"]["Action"]) == {
        "kafka:DescribeCluster",
        "kafka:DescribeClusterV2",
        "kafka:GetBootstrapBrokers",
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeClusterDynamicConfiguration",
    }
    assert by_sid["MskTopics"]["Resource"] == [
        f"{base}:topic/{path}/orders",
        f"{base}:topic/{path}/payments",
    ]
    assert set(by_sid["MskTopics"]["Action"]) == {
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
    }
    assert by_sid["MskConsumerGroups"]["Resource"] == [
        f"{base}:group/{path}/stack-events-orders",
        f"{base}:group/{path}/stack-events-payments",
    ]
    assert set(by_sid["MskConsumerGroups"]["Action"]) == {
        "kafka-cluster:DescribeGroup",
        "kafka-cluster:AlterGroup",
    }
    assert by_sid["MskNetworkInterfaces"]["Resource"] == [
        f"arn:aws:ec2:us-east-1:123456789012:{kind}/*"
        for kind in ("network-interface", "subnet", "security-group")
    ]
    assert by_sid["MskNetworkDescribe"]["Resource"] == "*"
    assert set(by_sid["MskNetworkDescribe"]["Action"]) <= _DESCRIBE_ONLY_ACTIONS
    # kafka actions only in the MSK statements, each on the cluster or what its ARN names
    for statement in on["EventSourcesPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
        if "kafka" in json.dumps(statement["Action"]):
            assert statement.get("Sid") in by_sid
            for resource in _as_list(statement["Resource"]):
                assert resource == CLUSTER or resource.startswith(f"{base}:"), resource
                assert resource == CLUSTER or f"/{path}/" in resource, resource

    one = deployed(
        tpl,
        MskClusterArn=CLUSTER,
        MskTopics="orders",
        MskConsumerGroupId="billing",
        MskStartingPosition="LATEST",
    )
    assert [n for n in one if n.startswith("MskEvents")] == ["MskEvents"]
    props = one["MskEvents"]["Properties"]
    assert props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == "billing-orders"
    assert props["StartingPosition"] == "LATEST"
    assert _msk_statements(one)["MskConsumerGroups"]["Resource"] == [
        f"{base}:group/{path}/billing-orders"
    ]
    three = deployed(tpl, MskClusterArn=CLUSTER, MskTopics="a,b,c")
    topics = [three[n]["Properties"]["Topics"] for n in ("MskEvents", "MskEvents2", "MskEvents3")]
    assert topics == [["a"], ["b"], ["c"]]


def test_msk_mappings() -> None:
    """Amazon MSK feeds kafka:// subscriptions only when MskClusterArn names a cluster."""
    t = template()
    for name in ("MskClusterArn", "MskTopics", "MskConsumerGroupId"):
        assert t["Parameters"][name]["Default"] == "", name
    assert t["Parameters"]["MskTopics"]["Type"] == "CommaDelimitedList"
    assert "MskNeedsTopics" in t["Rules"]
    for name, resource in t["Resources"].items():
        if "Msk" in name:
            assert resource["Condition"].startswith("EventsFromMsk"), name
    _assert_msk_only_with_a_cluster(t)
