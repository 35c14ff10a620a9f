#!/usr/bin/env bash
# Regenerate the Python protobuf module of restate_lambda.protocol from
# restate_lambda/protocol/service_protocol.proto (uses grpcio-tools' bundled protoc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SRC="$ROOT/restate_lambda/protocol"
OUT="$SRC/generated"

mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc \
  -I "$SRC" \
  --python_out="$OUT" \
  --pyi_out="$OUT" \
  "$SRC/service_protocol.proto"

cat > "$OUT/__init__.py" <<'PYEOF'
"""Generated protobuf code for the Restate service protocol (do not edit; see scripts/gen_proto.sh)."""
PYEOF
echo "generated into $OUT"
