#!/usr/bin/env bash
# The Python and Node environments of the client examples and of the tools
# that `make generate` and the manifest test use. Both live in the work tree
# and are reinstalled only when their pinned dependency lists change.
#
# Usage: scripts/clients.sh COMMAND
#   install   create .cache/venv from tools/requirements.txt (pip, PyPI) and
#             examples/node/node_modules from package-lock.json (npm ci)
#   env       print export lines for the Go tests (GATEWAY_TEST_PYTHON,
#             GATEWAY_TEST_NODE)
#   clean     delete both
#
# Environment: PYTHON [python3] makes the venv; NODE [node] and NPM [npm].
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.cache/venv"
REQUIREMENTS=("$REPO_ROOT/tools/requirements.txt" "$REPO_ROOT/examples/python/requirements.txt")
NODE_DIR="$REPO_ROOT/examples/node"
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"
NPM="${NPM:-npm}"

log() { printf '[clients] %s\n' "$*" >&2; }
die() { printf '[clients] ERROR: %s\n' "$*" >&2; exit 1; }

# The stamp of an environment: the hashes of the files it was installed from.
stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_python() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer"
  local want; want=$(stamp "${REQUIREMENTS[@]}")
  if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.stamp" 2>/dev/null)" == "$want" ]]; then return; fi
  log "creating $VENV (pip install -r tools/requirements.txt)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO_ROOT/tools/requirements.txt"
  printf '%s\n' "$want" >"$VENV/.stamp"
}

install_node() {
  command -v "$NODE" >/dev/null || die "$NODE not found: install Node.js 20 or newer"
  command -v "$NPM" >/dev/null || die "$NPM not found"
  local want; want=$(stamp "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")
  if [[ -d "$NODE_DIR/node_modules" && "$(cat "$NODE_DIR/node_modules/.stamp" 2>/dev/null)" == "$want" ]]; then return; fi
  log "installing $NODE_DIR/node_modules (npm ci)"
  (cd "$NODE_DIR" && "$NPM" ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want" >"$NODE_DIR/node_modules/.stamp"
}

case "${1:-}" in
  install)
    install_python
    install_node
    ;;
  env)
    echo "export GATEWAY_TEST_PYTHON=$VENV/bin/python"
    echo "export GATEWAY_TEST_NODE=$(command -v "$NODE")"
    ;;
  clean)
    rm -rf "$VENV" "$NODE_DIR/node_modules" "$NODE_DIR/dist"
    ;;
  *)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
