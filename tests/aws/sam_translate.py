"""Translate template.yaml with aws-sam-translator, offline (run with the SAM tool venv's Python).

Prints the translated CloudFormation template as JSON. Local ``CodeUri`` values are replaced by
``s3://`` URIs first, as ``sam package`` does.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _Loader:
    def load(self) -> dict[str, Any]:
        return {}


def main(path: str) -> None:
    with open(path) as f:
        template = yaml_parse(f.read())
    glob = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in glob:
        glob["CodeUri"] = "s3://bucket/code.zip"
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = "s3://bucket/code.zip"
    try:
        out = transform(template, {}, _Loader())
    except InvalidDocumentException as exc:
        print(json.dumps({"errors": [str(e) for e in exc.causes]}))
        sys.exit(1)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
