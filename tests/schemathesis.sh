#!/usr/bin/env bash
# Schemathesis (pinned in tests/requirements.txt, installed by tests/setup.sh) against the real
# callmux binary: the shipped providers.toml on a free loopback port, every operation of its
# /openapi.json with every check, as the demo org. Fails on any finding. Needs the binary
# built (`cargo build`, or the `cargo test` before this in .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/callmux
st=tests/.venv/bin/schemathesis
[ -x "$bin" ] || { echo "schemathesis: $bin is not built; run cargo build first" >&2; exit 1; }
[ -x "$st" ] || { echo "schemathesis: $st is missing; run bash tests/setup.sh first" >&2; exit 1; }

work=$(mktemp -d)
server=""
cleanup() {
    status=$?
    [ "$status" -eq 0 ] || { echo "schemathesis: callmux's log:" >&2; tail -n 40 "$work/log" >&2 || true; }
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port, which callmux logs.
CALLMUX_SERVER__BIND=127.0.0.1:0 NO_COLOR=1 RUST_LOG=warn,callmux=info \
    "$bin" --config providers.toml serve >"$work/log" 2>&1 &
server=$!
base=""
for _ in $(seq 1 100); do
    base=$(grep -o 'listening on http://[0-9.:]*' "$work/log" | head -n1 | sed 's/listening on //') || true
    [ -n "$base" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$base" ] || { echo "schemathesis: callmux did not say where it listens" >&2; cat "$work/log" >&2; exit 1; }

# Bounded: a fixed seed and example count per operation, and a time budget, so the run is
# repeatable and short on two cores. One worker: Hypothesis describes its strategies with
# Python's `ast`, which CPython 3.11 cannot run from two threads at once ("AST constructor
# recursion depth mismatch"). No example database: each run starts from the seed alone (a
# failure is still kept under .schemathesis/ for `st replay`). What tests/schemathesis.toml
# configures, and why, is written there.
"$st" --config-file tests/schemathesis.toml run "$base/openapi.json" \
    --checks all \
    --header "authorization: demo-key" \
    --header "x-bland-org-id: demo" \
    --max-examples 25 \
    --seed 19 \
    --generation-database none \
    --workers 1 \
    --request-timeout 5 \
    --max-time 100 \
    --no-color
