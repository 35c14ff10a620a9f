#!/usr/bin/env bash
# Start (or stop) the AWS test servers in the background and print the env the tests read:
# DynamoDB Local (scripts/dynamodb_local.sh) and a moto server for S3 whose requests are
# serialised by a lock (python -m tests.support.aws moto PORT).
#
#   eval "$(scripts/start_test_servers.sh)"          # start on free ports, export the endpoints
#   scripts/start_test_servers.sh [DDB_PORT] [S3_PORT]
#   scripts/start_test_servers.sh stop               # stop what an earlier start started
#
# Prints `export DYNAMODB_ENDPOINT=... S3_ENDPOINT=... AWS_*=...` on stdout; logs and pid files go
# to <repo>/.tools/run/. Without these variables the pytest fixtures start their own servers.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${repo_root}/.tools/run"
python="${PYTHON:-${repo_root}/.venv/bin/python}"
mkdir -p "${run_dir}"

stop_one() {
  # $1 = name. Signals only the process group recorded when we started it.
  local pid_file="${run_dir}/$1.pid"
  [[ -f "${pid_file}" ]] || return 0
  local pid
  pid="$(cat "${pid_file}")"
  if kill -0 "${pid}" 2>/dev/null; then
    kill -TERM -- "-${pid}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-${pid}" 2>/dev/null || true
  fi
  rm -f "${pid_file}"
}

if [[ "${1:-}" == "stop" ]]; then
  stop_one dynamodb-local
  stop_one moto-s3
  exit 0
fi

free_port() {
  "${python}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  # $1 = port, $2 = name, $3 = timeout in s
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if ((SECONDS > deadline)); then
      echo "start_test_servers.sh: $2 not listening on $1 after $3 s; see ${run_dir}/$2.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}

ddb_port="${1:-$(free_port)}"
s3_port="${2:-$(free_port)}"

"${repo_root}/scripts/dynamodb_local.sh" install
stop_one dynamodb-local
stop_one moto-s3

setsid "${repo_root}/scripts/dynamodb_local.sh" run "${ddb_port}" \
  >"${run_dir}/dynamodb-local.log" 2>&1 </dev/null &
echo $! >"${run_dir}/dynamodb-local.pid"
(cd "${repo_root}" && exec setsid "${python}" -m tests.support.aws moto "${s3_port}") \
  >"${run_dir}/moto-s3.log" 2>&1 </dev/null &
echo $! >"${run_dir}/moto-s3.pid"

wait_port "${ddb_port}" dynamodb-local 60
wait_port "${s3_port}" moto-s3 30

cat <<ENV
export DYNAMODB_ENDPOINT=http://127.0.0.1:${ddb_port}
export S3_ENDPOINT=http://127.0.0.1:${s3_port}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
ENV
