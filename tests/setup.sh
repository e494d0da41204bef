#!/usr/bin/env bash
# What the tests need besides Rust, installed once (a no-op when present): Debian's
# redis-server (the shared-state tests start their own), Debian's chromium and the
# playwright-core pinned in tests/browser/package-lock.json (the dashboard's browser test;
# npm never downloads a browser), and a Python venv in tests/.venv with the packages pinned
# in tests/requirements.txt (Schemathesis, for tests/schemathesis.sh; the platforms' SDKs),
# and promtool (tests/promtool.sh). `.ci/run` runs this
# before `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"
    echo "setup: installing ${missing[*]} from Debian's packages" >&2
    $as_root apt-get update -qq
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null

# --- What real clients check (tests/promtool.sh; the SDK-driven tests in tests/it/clients.rs and tests/it/hooks.rs) ---
# promtool, unpacked from Debian's prometheus package into tests/.tools (Debian ships no
# promtool alone; unpacking rather than installing leaves no Prometheus server installed or
# started). tests/promtool.sh looks there first.
if [ ! -x tests/.tools/bin/promtool ]; then
    as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"
    echo "setup: unpacking promtool from Debian's prometheus package" >&2
    deb="$(mktemp -d)"
    (cd "$deb" && { apt-get download -qq prometheus 2>/dev/null \
        || { $as_root apt-get update -qq && apt-get download -qq prometheus; }; })
    dpkg-deb -x "$deb"/prometheus_*.deb "$deb/root"
    mkdir -p tests/.tools/bin
    cp "$deb/root/usr/bin/promtool" tests/.tools/bin/
    rm -rf "$deb"
fi
# tests/.venv with the pinned Python packages of tests/requirements.txt: Schemathesis, and
# the platforms' own SDKs (bland, twilio) that the integration tests drive against the real
# server. Made once; pip then only checks the pins (quiet, and quick when satisfied).
[ -x tests/.venv/bin/pip ] || python3 -m venv tests/.venv
tests/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
