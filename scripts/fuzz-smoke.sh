#!/usr/bin/env bash
# fuzz-smoke.sh [SECONDS]: run every cargo-fuzz target for SECONDS each (default 30).
#
# Targets are discovered by listing fuzz/fuzz_targets/*.rs, so a new target needs only its
# file and its [[bin]] entry in fuzz/Cargo.toml. All targets are built first in one cargo
# invocation (one shared fuzz/target directory), then each runs with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run T fuzz/corpus/T fuzz/seeds/T -- -max_total_time=SECONDS
# fuzz/seeds/T is the checked-in seed corpus (read only); fuzz/corpus/T is the scratch corpus
# where libFuzzer writes what it finds (git-ignored, kept between local runs). fuzz/options/T,
# when present, holds T's own settings, one per line, with comments saying why: `-flag` lines
# go to libFuzzer, `NAME=value` lines into its environment.
# cargo-fuzz is installed if missing (cargo install cargo-fuzz --locked). On this stable
# toolchain, RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only flags it needs.
#
# The smoke run uses a fixed libFuzzer seed (FUZZ_SEED, default 1), so CI explores the same
# inputs on every run and a failure reproduces; exploratory runs (docs/fuzzing.md) use random
# seeds and longer times. FUZZ_SEED=0 lets libFuzzer pick one.
#
# Exit status: 0 when no target crashed; 1 otherwise, after running every target and
# printing each crash artifact (see docs/fuzzing.md to turn one into a regression test).
set -euo pipefail

secs="${1:-30}"
seed="${FUZZ_SEED:-1}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=()
for f in fuzz/fuzz_targets/*.rs; do
    [ -e "$f" ] || continue
    targets+=("$(basename "$f" .rs)")
done
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz-smoke: no targets in fuzz/fuzz_targets" >&2
    exit 1
fi
echo "fuzz-smoke: targets: ${targets[*]} (${secs} s each)"

start=$(date +%s)
cargo fuzz build
echo "fuzz-smoke: built in $(($(date +%s) - start)) s"

failed=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    # A target's own settings, one per line, in fuzz/options/T (with the reason): `-flag`
    # lines go to libFuzzer, `NAME=value` lines into its environment.
    extra=()
    envs=()
    if [ -f "fuzz/options/$t" ]; then
        while IFS= read -r line; do
            case "$line" in ''|'#'*) ;; -*) extra+=("$line") ;; *=*) envs+=("$line") ;; esac
        done < "fuzz/options/$t"
    fi
    echo "fuzz-smoke: running $t for ${secs} s ${envs[*]} ${extra[*]}"
    # -timeout: an input that takes longer than 10 s counts as a crash (a hang).
    if env "${envs[@]}" cargo fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -seed="$seed" -timeout=10 -print_final_stats=1 "${extra[@]}"; then
        echo "fuzz-smoke: $t: no crash"
    else
        failed+=("$t")
        echo "fuzz-smoke: $t: CRASH; artifacts:" >&2
        ls -1t "fuzz/artifacts/$t/" 2>/dev/null | head -n 5 | sed "s|^|  fuzz/artifacts/$t/|" >&2 || true
        echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t fuzz/artifacts/$t/<file>" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} target(s), no crash"
