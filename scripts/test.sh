#!/usr/bin/env bash
# Set up (see scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
# The test fixtures start every server the tests need (restate-server, DynamoDB Local, moto)
# on 127.0.0.1 and stop them afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.tools/node_modules/.bin:$PATH"
exec .venv/bin/python -m pytest "$@"
