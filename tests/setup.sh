#!/usr/bin/env bash
# What the tests need besides Rust, installed once (a no-op when present): Debian's
# redis-server (the shared-state tests start their own), Debian's chromium and the
# playwright-core pinned in tests/browser/package-lock.json (the dashboard's browser test;
# npm never downloads a browser), and a Python venv in tests/.venv with the packages pinned
# in tests/requirements.txt (Schemathesis, for tests/schemathesis.sh). `.ci/run` runs this
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

# The venv is made once; pip then only checks the pins (quiet, and quick when satisfied).
[ -x tests/.venv/bin/pip ] || python3 -m venv tests/.venv
tests/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
