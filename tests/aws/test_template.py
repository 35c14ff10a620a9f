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
    (mapping,) = by_type["AWS::Lambda::EventSourceMapping"]
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (rule,) = by_type["AWS::Events::Rule"]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (url,) = by_type["AWS::Lambda::Url"]
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    apis = {r["Condition"] for r in by_type["AWS::ApiGatewayV2::Api"]}
    assert apis == {"PublicAuth", "IamAuth"}  # exactly one exists per deployment
    for permission in by_type["AWS::Lambda::Permission"]:
        if "execute-api" in json.dumps(permission["Properties"]):
            assert permission.get("Condition") in ("PublicAuth", "IamAuth")
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
    for package in ("infra", "invoker", "backends", "ingress", "restate_lambda", "mangum"):
        assert (worker / package).is_dir(), package
    assert list((worker / "msgspec").glob("_core.cpython-312-aarch64-linux-gnu.so"))
    assert (tmp_path / "build" / "GreeterFunction" / "examples" / "greeter.py").is_file()
