#!/usr/bin/env bash
# Real rqlite client libraries, unmodified, against real raftlited nodes.
#
#   bash tests/clients/run.sh [PATH_TO_RAFTLITED]
#
# Installs the clients at the exact versions pinned here (Python: requirements.txt into a venv
# under target/clients-venv; JavaScript: package-lock.json into tests/clients/js/node_modules
# with `npm ci`), installs python3-venv/nodejs/npm with apt-get only if they are missing, then
# runs the pytest suites (pyrqlite, rqdb, sqlalchemy-rqlite) and the node:test suite
# (rqlite-js). Each suite starts its own 1-node and 3-node clusters on free loopback ports
# (cluster.py). The binary is the argument, else $RAFTLITED, else target/release/raftlited,
# else target/debug/raftlited. Exits non-zero on the first failing suite.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

if [ $# -ge 1 ]; then
  RAFTLITED=$(realpath "$1")
elif [ -z "${RAFTLITED:-}" ]; then
  for profile in release debug; do
    if [ -x "target/$profile/raftlited" ]; then RAFTLITED="$ROOT/target/$profile/raftlited"; break; fi
  done
fi
if [ -z "${RAFTLITED:-}" ] || [ ! -x "$RAFTLITED" ]; then
  echo "no raftlited binary: run cargo build, or pass its path" >&2
  exit 1
fi
export RAFTLITED
echo "clients: testing $RAFTLITED"

# Prerequisites, installed only when missing (idempotent).
missing=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "clients: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "node $(node --version) is too old: node:test needs node 18 or newer" >&2
  exit 1
fi

# Python clients: a private venv, reinstalled only when requirements.txt changes.
VENV="$ROOT/target/clients-venv"
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$want" > "$STAMP"
fi

# JavaScript client: node_modules from the committed lock file, refreshed when it changes.
JS="$HERE/js"
JS_STAMP="$JS/node_modules/.raftlite-lock.sha256"
want=$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$JS_STAMP" 2>/dev/null)" != "$want" ]; then
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$JS_STAMP"
fi

echo "clients: pyrqlite, rqdb, sqlalchemy-rqlite (pytest)"
(cd "$HERE" && timeout 300 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  test_pyrqlite.py test_rqdb.py test_sqlalchemy.py)

echo "clients: rqlite-js (node:test)"
(cd "$JS" && timeout 300 "$VENV/bin/python" ../cluster.py --bin "$RAFTLITED" -- \
  node --test rqlite_js.test.js)

echo "clients: all passed"
