#!/usr/bin/env bash
# Fuzz smoke test: every cargo-fuzz target for a short, bounded run from the committed seeds,
# plus a replay of every input under fuzz/regressions/<target>/. Exits non-zero if any target
# crashes, panics, leaks, hangs or fails to build.
#
#   bash fuzz/smoke.sh                     # 20,000 inputs per target
#   SMOKE_RUNS=200000 bash fuzz/smoke.sh   # more
#   FUZZ_SANITIZER=none bash fuzz/smoke.sh # if the AddressSanitizer build fails
#   SMOKE_TARGETS="list_body" bash fuzz/smoke.sh # only these targets
#
# Works from a fresh clone with only stable Rust: cargo-fuzz is installed from crates.io if
# missing, and RUSTC_BOOTSTRAP=1 lets stable rustc take the nightly flags cargo-fuzz passes.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS="${SMOKE_RUNS:-20000}"
# Wall-clock cap per target, so a slow machine still finishes in bounded time.
MAX_TIME="${SMOKE_MAX_TIME:-120}"
SANITIZER="${FUZZ_SANITIZER:-address}"
# `list_body` reads every kind's list body, `place_answer` every kind's create-call answer;
# in both the first byte picks the kind.
read -r -a TARGETS <<<"${SMOKE_TARGETS:-list_body place_answer auth_headers config_toml twilio_callback retell_hook vapi_hook bland_hook}"

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

# Same flags for build and run, so `run` does not rebuild. -a: debug assertions and overflow
# checks on, in an optimised build.
FLAGS=(--fuzz-dir fuzz --sanitizer "$SANITIZER" -a)

echo "smoke: building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)" >&2
for t in "${TARGETS[@]}"; do
    cargo fuzz build "${FLAGS[@]}" "$t"
done

failed=()
for t in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    cp fuzz/seeds/"$t"/* "$corpus"/
    dirs=("$corpus")
    if [ -d "fuzz/regressions/$t" ] && [ -n "$(ls -A "fuzz/regressions/$t")" ]; then
        dirs+=("fuzz/regressions/$t")
    fi
    echo "smoke: $t: $RUNS runs (at most ${MAX_TIME}s)" >&2
    if cargo fuzz run "${FLAGS[@]}" "$t" "${dirs[@]}" -- \
        -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 -print_final_stats=1 \
        2>"fuzz/smoke-$t.log"; then
        grep -E '^(Done|stat::number_of_executed_units)' "fuzz/smoke-$t.log" >&2 || true
    else
        echo "smoke: $t FAILED (full output: fuzz/smoke-$t.log)" >&2
        grep -E -A2 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^SUMMARY' \
            "fuzz/smoke-$t.log" | head -n 30 >&2 || true
        sed -n '/^Failing input:/,/^Error:/p' "fuzz/smoke-$t.log" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "smoke: all ${#TARGETS[@]} targets ran $RUNS inputs without a crash" >&2
