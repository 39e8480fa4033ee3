#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
#
#   bash scripts/test-all.sh
#
# It installs what it needs (idempotently), then runs, in order: formatting and lint checks,
# the release build, every unit and end-to-end test (nextest when present), the SQL dump
# conformance suite (tests/dump_conformance/, against the sqlite3 3.40.1 shell), a smoke run of
# every fuzz target, and the benchmark harness in --quick mode.
# Each step prints a banner; the first failure stops the run with a non-zero status.
# After the tests, real rqlite client libraries (tests/clients) and the web console's browser
# tests (scripts/console-tests.sh) run against the release binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# Each banner also shows the room left on the disk of target/: a step that dies of a full disk
# (the linker's Bus error, gcc's "No space left") is then recognisable from the log alone.
step() {
  printf '\n=== %s ===\n' "$*"
  df -h "$ROOT" 2>/dev/null | awk 'NR == 2 { print "(disk: " $4 " free of " $2 ")" }' || true
}

step "install prerequisites"
# sqlite3 is the dump reference (the dump tests need 3.40.x, Debian 12's package); curl is the
# download client of the benchmarks; script (bsdutils) gives the shell's terminal test a pty;
# mkfs.ext4 (e2fsprogs) makes the small disk of the full-disk backup test where a tmpfs cannot
# be mounted; eatmydata (Debian) runs the benchmarks' unsynced `sqlite3 .backup` reference
# (P1, issue #26). Under CI=true a test whose prerequisite is missing fails instead of skipping.
missing=()
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The extension the -extensions-path tests build (tests/extensions.rs) needs SQLite's header.
[ -f /usr/include/sqlite3ext.h ] || missing+=(libsqlite3-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v eatmydata >/dev/null 2>&1 || missing+=(eatmydata)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
{ command -v mkfs.ext4 || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ]; } >/dev/null 2>&1 || missing+=(e2fsprogs)
# tests/metrics.rs parses every /metrics scrape with the Prometheus project's own OpenMetrics
# parser (Debian's python3-prometheus-client, for the system python3).
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1 || missing+=(python3-prometheus-client)
# tests/discovery.rs runs dnsmasq as the resolver of a network namespace it makes with ip.
{ command -v dnsmasq || [ -x /usr/sbin/dnsmasq ]; } >/dev/null 2>&1 || missing+=(dnsmasq-base)
{ command -v ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } >/dev/null 2>&1 || missing+=(iproute2)
# ... and starts a real etcd for -disco-mode etcd-kv.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# The S3 storage tests' server (moto, below) goes in a venv.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
sqlite3 --version
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

# The S3-compatible server of the S3 storage tests (tests/common/s3.rs): moto's server at the
# version pinned in tests/s3/requirements.txt, in a private venv, reinstalled only when the pin
# changes (the stamp holds the pin it was installed from).
MOTO_VENV="$ROOT/target/moto-venv"
MOTO_STAMP="$MOTO_VENV/.requirements"
want=$(cat tests/s3/requirements.txt)
if [ ! -x "$MOTO_VENV/bin/moto_server" ] || [ "$(cat "$MOTO_STAMP" 2>/dev/null)" != "$want" ]; then
  rm -rf "$MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/s3/requirements.txt
  echo "$want" > "$MOTO_STAMP"
fi
export RAFTLITE_MOTO_SERVER="$MOTO_VENV/bin/moto_server"

# The tests run with the crash points built in (the `failpoints` feature: the crash suite,
# tests/faults_crash.rs, needs them in the raftlited it starts; they do nothing unless
# FAILPOINTS arms them). The release build and the benchmarks are built without them.
TEST_FEATURES=(--features raftlite/failpoints)
# A fresh clone builds everything once: incremental caches would only take disk (~3 GB).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step "format and lint"
cargo fmt --all -- --check
# Both builds are linted: the one users get, and the one the tests run.
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets "${TEST_FEATURES[@]}" -- -D warnings
# The library without the server (what Cargo.toml promises the lighter builds).
cargo check -p raftlite --no-default-features

step "release build"
cargo build --release --workspace

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  # The dump conformance suite has its own step below.
  cargo nextest run --workspace "${TEST_FEATURES[@]}" --no-fail-fast \
    -E 'not binary_id(raftlite::dump_conformance)'
  # nextest does not run doctests.
  cargo test --workspace "${TEST_FEATURES[@]}" --doc
else
  cargo test --workspace "${TEST_FEATURES[@]}"
fi

step "rqlite client libraries (pyrqlite, rqdb, sqlalchemy-rqlite, rqlite-js)"
# Installs the pinned clients itself (a venv under target/, npm ci in tests/clients/js).
bash tests/clients/run.sh "$ROOT/target/release/raftlited"

step "web console in a browser"
# chromium (apt) and playwright-core (npm ci) are installed by the script; it uses the release
# binary built above.
bash scripts/console-tests.sh "$ROOT/target/release/raftlited"

step "SQL dump conformance: raftlite dump and GET /db/backup?fmt=sql against sqlite3 .dump"
# Every case and seeded random database, byte for byte and after a reload (one line each;
# docs/backup.md). Without nextest, `cargo test --workspace` above has run it once already.
if cargo nextest --version >/dev/null 2>&1; then
  # --workspace, as above: the same feature resolution reuses the build instead of a second one.
  cargo nextest run --workspace "${TEST_FEATURES[@]}" --no-fail-fast \
    -E 'binary_id(raftlite::dump_conformance)' --success-output final
else
  cargo test --test dump_conformance -- --nocapture
fi

# The debug test binaries are not needed past this point (the fuzz and benchmark builds have
# their own), and a fresh clone's CI disk can be small: they go before the fuzz build
# (about 5 GB) under CI. A developer's checkout keeps them.
if [ "${CI:-}" = "true" ]; then rm -rf "$ROOT/target/debug"; fi

if [ -f scripts/fuzz-smoke.sh ]; then
  step "fuzz smoke"
  bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-30}"
fi

if [ -f scripts/bench-quick.sh ]; then
  step "benchmark harness (--quick)"
  bash scripts/bench-quick.sh
fi

step "all checks passed"
