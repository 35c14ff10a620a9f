"""Generated code is current; importing the package stays lazy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "restate_lambda" / "protocol"


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    rc = protoc.main(
        ["protoc", f"-I{PKG}", f"--python_out={tmp_path}", str(PKG / "service_protocol.proto")]
    )
    assert rc == 0
    fresh = (tmp_path / "service_protocol_pb2.py").read_text()
    committed = (PKG / "generated" / "service_protocol_pb2.py").read_text()
    assert fresh == committed, "run scripts/gen_proto.sh"


def test_import_does_not_load_protobuf_or_msgspec() -> None:
    code = (
        "import sys, restate_lambda.protocol as p;"
        "p.Frame; p.MessageType; p.InvocationId; p.parse_invocation_content_type;"
        "heavy = [m for m in ('google.protobuf', 'msgspec', 'dataclasses') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PKG.parents[1],
    )
    assert out.stdout.strip() == ""
