#!/usr/bin/env bash
# Set up (see scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
# The test fixtures start every server the tests need (restate-server, DynamoDB Local, moto)
# on 127.0.0.1 and stop them afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.tools/node_modules/.bin:$PATH"
# tests/test_packaging.py installs the built wheel into a clean venv from the package index, as
# a user would (about a minute); RESTATE_LAMBDA_WHEEL_INSTALL=0 skips that part.
export RESTATE_LAMBDA_WHEEL_INSTALL="${RESTATE_LAMBDA_WHEEL_INSTALL:-1}"
exec .venv/bin/python -m pytest "$@"
