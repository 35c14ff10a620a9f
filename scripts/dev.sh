#!/usr/bin/env bash
# Set up (without the test tools) and run the local runtime with an example app:
#   scripts/dev.sh                      # serves examples/greeter.py
#   scripts/dev.sh examples/counter.py  # any module exposing an ASGI `app`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SKIP_TOOLS=1 bash scripts/setup.sh
if [[ $# -eq 0 ]]; then set -- examples/greeter.py; fi
exec .venv/bin/restate-lambda dev "$@"
