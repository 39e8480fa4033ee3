#!/usr/bin/env bash
# Browser tests of the web console (/console/): Playwright (npm playwright-core, pinned in
# tests/console/package-lock.json) driving Debian's chromium, headless, against real nodes
# started on free loopback ports. The tests save screenshots of every tab into
# target/console-screenshots/, or into docs/console/ (the ones docs/console.md shows) with
# UPDATE_SCREENSHOTS=1, so a test run does not rewrite committed files.
#
#   bash scripts/console-tests.sh [PATH/TO/raftlited]
#
# Installs chromium (apt) and the npm dependencies (npm ci, into tests/console/node_modules)
# when missing. Builds nothing: it uses the binary given, else target/release/raftlited, else
# target/debug/raftlited.
set -euo pipefail
# A binary given as a relative path is relative to the caller's directory.
BIN=${1:+$(realpath -m "$1")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if [ -z "$BIN" ]; then
  for b in target/release/raftlited target/debug/raftlited; do
    if [ -x "$b" ]; then BIN=$ROOT/$b; break; fi
  done
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "no raftlited binary: build one (cargo build) or pass its path" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "node $node_major is too old for playwright-core 1.57 (18 or newer)" >&2
  exit 1
fi

cd tests/console
# npm ci only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.raftlite-lock; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.raftlite-lock
fi

# One test file: node runs its tests one after the other (they share the nodes they start).
if [ "${UPDATE_SCREENSHOTS:-0}" = 1 ]; then
  SHOTS=$ROOT/docs/console
else
  SHOTS=$ROOT/target/console-screenshots
fi
mkdir -p "$SHOTS"
RAFTLITED=$BIN CHROMIUM=$(command -v chromium) SCREENSHOT_DIR=$SHOTS \
  node --test --test-reporter=spec console.test.mjs
