#!/usr/bin/env bash
# Install the npm-distributed tools the tests and benchmarks use into <repo>/.tools/.
#
# Idempotent: does nothing when the pinned versions are already installed.
# Quiet on success; prints npm's output and exits non-zero on failure.
#
#   scripts/install_tools.sh            # install into <repo>/.tools
#   TOOLS_DIR=/elsewhere scripts/install_tools.sh
set -euo pipefail

RESTATE_VERSION="1.7.12"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TOOLS_DIR:-${repo_root}/.tools}"
bin_dir="${tools_dir}/node_modules/.bin"

packages=(
  "@restatedev/restate-server@${RESTATE_VERSION}"
  "@restatedev/restate@${RESTATE_VERSION}"
)

if ! command -v npm >/dev/null 2>&1; then
  echo "install_tools.sh: npm not found on PATH" >&2
  exit 1
fi

installed_version() {
  # $1 = package name; prints the installed version or nothing.
  local pkg_json="${tools_dir}/node_modules/$1/package.json"
  [[ -f "${pkg_json}" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version || "")' "${pkg_json}" 2>/dev/null || true
}

up_to_date() {
  [[ "$(installed_version @restatedev/restate-server)" == "${RESTATE_VERSION}" ]] || return 1
  [[ "$(installed_version @restatedev/restate)" == "${RESTATE_VERSION}" ]] || return 1
  [[ -x "${bin_dir}/restate-server" && -x "${bin_dir}/restate" ]] || return 1
  "${bin_dir}/restate-server" --version >/dev/null 2>&1 || return 1
  return 0
}

if up_to_date; then
  exit 0
fi

mkdir -p "${tools_dir}"
log="$(mktemp)"
trap 'rm -f "${log}"' EXIT
if ! npm install --prefix "${tools_dir}" --no-audit --no-fund --loglevel=error \
    "${packages[@]}" >"${log}" 2>&1; then
  cat "${log}" >&2
  echo "install_tools.sh: npm install failed" >&2
  exit 1
fi

if ! up_to_date; then
  cat "${log}" >&2
  echo "install_tools.sh: tools missing or wrong version after install (${bin_dir})" >&2
  exit 1
fi
