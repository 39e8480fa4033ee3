#!/usr/bin/env bash
# bench-quick.sh: build the workspace in release mode and run `raftlite-bench --quick all`.
#
# This proves the benchmark harness works end to end (data generation, starting raftlited,
# every scenario, the reference tools, the table and the JSON report) in well under a minute
# once built. Its figures are not worth recording; full runs are in docs/benchmarks.md.
# Then `raftlite-bench report --complete` reads the run's JSON back: it fails when a goal of
# docs/benchmarks.md's table finds no figure, i.e. when a scenario no longer writes a row
# the goal reads (bench/src/goals.rs). Last, `raftlite-bench chart` draws the run (the
# throughput-vs-size charts of its `sizes` scenario and the goals chart) into
# WORK_DIR/charts, and each expected chart must be there.
# The work directory (data set cache, scratch files, results.json) is target/bench-quick
# unless BENCH_WORK_DIR says otherwise. Extra arguments go to raftlite-bench.
# Needs the sqlite3 CLI (the reference tool), curl and eatmydata (P1's unsynced reference,
# issue #26) on PATH; what is missing is installed with apt, as scripts/test-all.sh does.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
work_dir="${BENCH_WORK_DIR:-$target_dir/bench-quick}"

missing=()
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v eatmydata >/dev/null 2>&1 || missing+=(eatmydata)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

cargo build --release --workspace
"$target_dir/release/raftlite-bench" --quick --bin-dir "$target_dir/release" \
    --work-dir "$work_dir" --out "$work_dir/results.json" "$@" all
# --all-runs: a quick run is not read for the goals otherwise.
"$target_dir/release/raftlite-bench" report --all-runs --complete "$work_dir/results.json"
charts="$work_dir/charts"
rm -rf "$charts"
"$target_dir/release/raftlite-bench" chart --all-runs --out "$charts" "$work_dir/results.json"
for chart in goals sizes-backup sizes-dump sizes-load; do
    if [[ ! -s "$charts/$chart.svg" ]]; then
        echo "bench-quick.sh: raftlite-bench chart drew no $charts/$chart.svg" >&2
        exit 1
    fi
done
