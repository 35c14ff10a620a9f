#!/usr/bin/env bash
# Run the local runtime with an example app, after a slim install (the runtime only: no test,
# lint or AWS tools):
#   scripts/dev.sh                                # serves examples/greeter.py
#   scripts/dev.sh examples/counter.py --reload   # any module exposing an ASGI `app`, any option
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
hash="$(sha256sum pyproject.toml | cut -c1-16)"
# scripts/setup.sh's full install (stamp .installed-HASH) includes the runtime too
if [[ ! -f ".venv/.installed-$hash" && ! -f ".venv/.installed-runtime-$hash" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  touch ".venv/.installed-runtime-$hash"
fi
if [[ $# -eq 0 ]]; then set -- examples/greeter.py; fi
exec .venv/bin/restate-lambda dev "$@"
