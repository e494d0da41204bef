#!/usr/bin/env bash
# Prometheus's own linter over a real `/metrics`: the real binary serving the shipped
# providers.toml (the demo, from files), scraped after a few requests of each kind, then
# `promtool check metrics`; any finding fails. `.ci/run` runs it after `cargo test`;
# `bash tests/setup.sh` puts promtool in tests/.tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PATH="$PWD/tests/.tools/bin:$PATH"
command -v promtool >/dev/null 2>&1 || {
    echo "promtool: not installed; run bash tests/setup.sh" >&2
    exit 1
}
cargo build --locked --quiet --bin callmux

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

CALLMUX_SERVER__BIND=127.0.0.1:0 target/debug/callmux serve --config providers.toml \
    >"$work/out" 2>"$work/log" &
pid=$!
addr=""
for _ in $(seq 300); do
    addr="$(grep -ao 'listening on http://[0-9.:]*' "$work/log" | head -n1 | sed 's|.*http://||')" || true
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; echo "promtool: callmux exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log" >&2; echo "promtool: callmux did not start in 30 s" >&2; exit 1; }

demo=(-H 'authorization: demo-key' -H 'x-bland-org-id: demo')
for path in /api/calls /v1/calls/active /calls /healthz /readyz /openapi.json /nowhere; do
    curl -s -o /dev/null "${demo[@]}" "http://$addr$path"
done
curl -s -o /dev/null -H 'authorization: wrong' "http://$addr/api/calls"
curl -s -o /dev/null -X POST "${demo[@]}" "http://$addr/api/calls/no-such-call/end"
curl -s -o /dev/null -X POST "http://$addr/hooks/twilio/no-such-provider"
curl -sf "http://$addr/metrics" >"$work/metrics"

families="$(grep -c '^# TYPE ' "$work/metrics" || true)"
if ! promtool check metrics <"$work/metrics"; then
    echo "promtool: findings above, in callmux's /metrics" >&2
    exit 1
fi
echo "promtool: $families metric families, no findings"
