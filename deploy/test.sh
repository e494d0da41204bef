#!/usr/bin/env bash
# deploy/test.sh — builds the callmux image and runs its three deployable forms for real:
# the image alone (the demo), deploy/compose.yaml (two replicas on Redis) and
# deploy/kubernetes/ (podman kube play), then tears them down. `.ci/run` calls it last.
#
# Needs root and Debian, and nothing else installed: it installs podman, buildah, runc,
# mmdebstrap and podman-compose from Debian (podman-compose from PyPI if Debian lacks it),
# and makes every base image itself with mmdebstrap from Debian's packages, since no
# container registry is reachable. Idempotent: a second run reuses the packages, the base
# images and the build cache, and rebuilds only what changed.
#
# Podman's configuration and storage: those named by CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF when set, else its own under $CALLMUX_DEPLOY_STATE
# (default /var/lib/callmux-deploy-test). The image it builds stays there as
# localhost/callmux:latest. Every request goes to 127.0.0.1 or to container addresses on
# this host. Ports: $CALLMUX_DEPLOY_PORT (default 18080) and the two above it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

STATE=${CALLMUX_DEPLOY_STATE:-/var/lib/callmux-deploy-test}
SUITE=trixie # Debian 13: rustc 1.85, Cargo.toml's rust-version (bookworm's is 1.63)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PORT=${CALLMUX_DEPLOY_PORT:-18080}
PORT_A=$((PORT + 1))
PORT_B=$((PORT + 2))
IMAGE=localhost/callmux:latest
BUILDER=localhost/callmux-builder:$SUITE
RUNTIME=localhost/callmux-runtime:$SUITE
REDIS_LOCAL=localhost/callmux-redis:$SUITE
# The public Redis image compose.yaml and redis.yaml name; a Redis made from Debian's
# package is tagged so in this storage, since no registry can be pulled from here.
REDIS_PUBLIC=docker.io/library/redis:7.4
PROJECT=callmux-deploy-test   # compose project, container and network names
KUBE_NET=callmux-deploy-kube

step() { printf '\ndeploy/test.sh: %s (%ss)\n' "$*" "$SECONDS" >&2; }
die() { printf 'deploy/test.sh: FAILED: %s\n' "$*" >&2; exit 1; }

# Rootful podman (with runc), and apt-get: root, or through sudo.
if [ "$(id -u)" -ne 0 ]; then exec sudo --preserve-env bash "$0" "$@"; fi

# ------------------------------------------------------------------ packages
step "packages"
need=()
for pair in podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap \
    netavark:/usr/lib/podman/netavark aardvark-dns:/usr/lib/podman/aardvark-dns \
    iptables:iptables catatonit:/usr/libexec/podman/catatonit curl:curl; do
    pkg=${pair%%:*} bin=${pair#*:}
    if [ "${bin#/}" != "$bin" ]; then [ -e "$bin" ] || need+=("$pkg"); else command -v "$bin" >/dev/null || need+=("$pkg"); fi
done
if ! command -v podman-compose >/dev/null && apt-cache show podman-compose >/dev/null 2>&1; then
    need+=(podman-compose)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
COMPOSE=(podman-compose)
if ! command -v podman-compose >/dev/null; then
    # Not in this Debian release: PyPI's, in a venv of our own (Debian's pip refuses to
    # install into the system Python).
    if [ ! -x "$STATE/venv/bin/podman-compose" ]; then
        command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null \
            || apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$STATE/venv"
        "$STATE/venv/bin/pip" install -q podman-compose
    fi
    COMPOSE=("$STATE/venv/bin/podman-compose")
fi

# ------------------------------------------------------------ podman's config
mkdir -p "$STATE"
if [ -z "${CONTAINERS_CONF:-}" ]; then
    # crun refuses this host's cgroup layout (cgroup v1 with a name=systemd hierarchy);
    # runc works. runc cannot raise a container's rlimits above those podman's own
    # processes run with (here: the host's hard nofile, and 32768 processes, below the
    # host's hard nproc), so the defaults are capped there. No systemd: cgroupfs, file events.
    nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    cat >"$STATE/containers.conf" <<EOF
# Written by deploy/test.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
    export CONTAINERS_CONF=$STATE/containers.conf
fi
if [ -z "${CONTAINERS_STORAGE_CONF:-}" ]; then
    cat >"$STATE/storage.conf" <<EOF
# Written by deploy/test.sh.
[storage]
driver = "overlay"
graphroot = "$STATE/storage"
runroot = "/run/callmux-deploy-test"
EOF
    export CONTAINERS_STORAGE_CONF=$STATE/storage.conf
fi
podman info >/dev/null || die "podman does not start with $CONTAINERS_CONF and $CONTAINERS_STORAGE_CONF"

# ----------------------------------------------------------------- teardown
work=$(mktemp -d)
teardown() {
    podman kube down "$work/kube-redis.yaml" >/dev/null 2>&1 || true
    podman kube down "$work/kube-callmux.yaml" >/dev/null 2>&1 || true
    if [ -f "$work/compose.env" ]; then
        CALLMUX_ENV_FILE=$work/compose.env "${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml \
            down -t 15 >/dev/null 2>&1 || true
    fi
    podman rm -f -t 0 "$PROJECT-single" >/dev/null 2>&1 || true
    podman network rm -f "$KUBE_NET" "${PROJECT}_default" >/dev/null 2>&1 || true
    podman secret rm callmux-secrets >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap teardown EXIT
teardown_first() { # what a run killed half-way left behind
    podman pod rm -f -t 0 callmux-pod-0 callmux-pod-1 redis-pod-0 >/dev/null 2>&1 || true
    podman ps -a --format '{{.Names}}' | grep "^${PROJECT}" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
    podman network rm -f "$KUBE_NET" "${PROJECT}_default" >/dev/null 2>&1 || true
    podman secret rm callmux-secrets >/dev/null 2>&1 || true
}
teardown_first

# -------------------------------------------------------------- base images
# Each from Debian's packages with mmdebstrap, streamed into `podman import`. Made once;
# delete the image to remake it. Docs, man pages and translations are left out, as in
# Debian's -slim images.
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Retries "3"')
# A tarball has no environment: the PATH Debian's images set, for commands named bare (a
# Kubernetes command, a HEALTHCHECK) where no engine supplies a default.
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
base_image() { # name cmd mmdebstrap-args...
    local name=$1 cmd=$2; shift 2
    podman image exists "$name" && return 0
    step "making $name with mmdebstrap"
    mmdebstrap --quiet "${slim[@]}" "$@" --format=tar "$SUITE" - "$MIRROR" \
        | podman import --quiet --change "CMD $cmd" --change "ENV PATH=$path" - "$name" >/dev/null
}
# The three at once: each mostly waits on the mirror and dpkg, not the CPU.
pids=()
# The builder: Debian's rustc and cargo (1.85 in trixie) and the C toolchain cc-using
# crates need (ring, mimalloc).
base_image "$BUILDER" '["bash"]' --variant=apt --include=rustc,cargo,gcc,libc6-dev & pids+=($!)
# The runtime: Debian's Essential set (glibc, bash, coreutils), the -slim image's core.
base_image "$RUNTIME" '["bash"]' --variant=essential & pids+=($!)
base_image "$REDIS_LOCAL" '["redis-server"]' --variant=essential --include=redis-server & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || die "mmdebstrap or podman import failed (above)"; done
podman image exists "$REDIS_PUBLIC" || podman tag "$REDIS_LOCAL" "$REDIS_PUBLIC"

# -------------------------------------------------------------------- build
step "building $IMAGE (cargo build --release --locked with the builder's rustc)"
# The host's CA bundle: crates.io is reached through this host's TLS-inspecting egress.
ca=()
[ -f /etc/ssl/certs/ca-certificates.crt ] \
    && ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
podman build --format docker -f Containerfile "${ca[@]}" \
    --build-arg RUST_IMAGE="$BUILDER" --build-arg RUNTIME_IMAGE="$RUNTIME" \
    -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; die "podman build"; }
# The toolchain that ran `cargo build --locked`, as the build printed it: the proof of
# Cargo.toml's rust-version. (Nothing changed since the last build: every step cached.)
grep -E '^(cargo|rustc) [0-9]' "$work/build.log" >&2 \
    || echo "cached build, by $(podman run --rm --entrypoint rustc "$BUILDER" --version)" >&2
# Each source change leaves the previous build's images behind, untagged (~35 MB of
# layers); those older than a day go. Younger ones stay: they are the layer cache that
# makes an unchanged tree build in seconds.
podman image prune -f --filter until=24h >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB ($size bytes)" >&2

# ------------------------------------------------------------ HTTP helpers
# get URL [header...] -> body on stdout; fails unless the status is 2xx.
get() { local url=$1; shift; curl -sS --fail-with-body --max-time 5 "${@/#/-H}" "$url"; }
post() { local url=$1; shift; curl -sS --fail-with-body --max-time 5 -X POST "${@/#/-H}" "$url"; }
wait_for() { # URL seconds: until it answers 200
    local url=$1 deadline=$((SECONDS + $2))
    until curl -sf --max-time 2 -o /dev/null "$url"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ------------------------------------------------------------- the image alone
step "the image alone: podman run -p 127.0.0.1:$PORT:8080 $IMAGE"
# podman's own complaints (no systemd here for healthcheck timers) go to podman.log.
podman run -d --name "$PROJECT-single" -p "127.0.0.1:$PORT:8080" "$IMAGE" >/dev/null 2>>"$work/podman.log"
wait_for "http://127.0.0.1:$PORT/healthz" 30 || { podman logs "$PROJECT-single" >&2; die "the demo never answered /healthz"; }
demo=("authorization: demo-key" "x-bland-org-id: demo")
calls=$(get "http://127.0.0.1:$PORT/api/calls" "${demo[@]}")
echo "GET /api/calls -> $calls" | cut -c1-300 >&2
count=$(json 'd["count"]' <<<"$calls")
[ "$count" -ge 1 ] || die "the demo listed no calls"
bland=$(get "http://127.0.0.1:$PORT/v1/calls/active" "${demo[@]}")
[ "$(json 'len(d["data"])' <<<"$bland")" = "$count" ] || die "the Bland shape lists another count"
[ "$(podman exec "$PROJECT-single" id -u)" = 10001 ] || die "the server does not run as uid 10001"
# The image's HEALTHCHECK (podman runs it on demand here: no systemd timers).
podman healthcheck run "$PROJECT-single" >/dev/null 2>>"$work/podman.log" || die "the image's HEALTHCHECK fails"
# Graceful stop: SIGTERM ends the process cleanly (exit 0), well inside the 15 s given.
t0=$SECONDS
podman stop -t 15 "$PROJECT-single" >/dev/null 2>>"$work/podman.log"
code=$(podman inspect --format '{{.State.ExitCode}}' "$PROJECT-single")
[ "$code" = 0 ] || die "SIGTERM: exit code $code, not 0"
[ $((SECONDS - t0)) -lt 10 ] || die "SIGTERM: took $((SECONDS - t0)) s"
podman logs "$PROJECT-single" 2>&1 | grep -q 'callmux stopped' || die "SIGTERM: no 'callmux stopped' in the logs"
echo "SIGTERM: exit 0 in $((SECONDS - t0)) s" >&2
podman rm "$PROJECT-single" >/dev/null 2>>"$work/podman.log"

# ------------------------------------------------------------------ bad input
step "bad input: a missing or invalid mounted config"
bad_config() { # what (extra podman run args...): serve must stop at once with check-config's message
    local what=$1; shift
    local t0=$SECONDS serve_rc=0 check_rc=0
    # --no-healthcheck: podman would otherwise try (and fail, loudly) to add a systemd timer.
    timeout 30 podman run --rm --no-healthcheck "$@" "$IMAGE" >/dev/null 2>"$work/serve.err" || serve_rc=$?
    timeout 30 podman run --rm --no-healthcheck "$@" "$IMAGE" check-config >/dev/null 2>"$work/check.err" || check_rc=$?
    [ "$serve_rc" -ne 0 ] && [ "$serve_rc" -ne 124 ] || die "$what: serve exited $serve_rc"
    [ "$check_rc" -ne 0 ] || die "$what: check-config exited 0"
    grep -q '^error: ' "$work/check.err" || die "$what: check-config said no error"
    cmp -s "$work/serve.err" "$work/check.err" \
        || { diff "$work/check.err" "$work/serve.err" >&2; die "$what: serve and check-config said different things"; }
    echo "$what config: serve exits $serve_rc in $((SECONDS - t0)) s (both runs), as check-config:" >&2
    sed 's/^/    /' "$work/serve.err" >&2
}
bad_config "missing" -e CALLMUX_CONFIG=/etc/callmux/providers.toml
printf '[orgs.x]\napi_key_env = "X_KEY"\nproviders = ["nope"]\n' >"$work/invalid.toml"
chmod 0644 "$work/invalid.toml"
bad_config "invalid" -e CALLMUX_CONFIG=/etc/callmux/providers.toml \
    -v "$work/invalid.toml:/etc/callmux/providers.toml:ro,Z"

# -------------------------------------------------------------------- compose
step "compose: two replicas and Redis (deploy/compose.yaml)"
# The ConfigMap must hold deploy/providers.toml's text exactly (its block, unindented).
awk '/^  providers.toml: \|$/ {on = 1; next} on {sub(/^    /, ""); print}' \
    deploy/kubernetes/configmap.yaml | cmp -s - deploy/providers.toml \
    || die "deploy/kubernetes/configmap.yaml does not hold deploy/providers.toml"
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
key=$(hex 24) pw=$(hex 24)
cat >"$work/compose.env" <<EOF
DEMO_API_KEY=$key
REDIS_PASSWORD=$pw
REDIS_URL=redis://:$pw@redis:6379/0
STATE_SECRET=$(hex 32)
EOF
chmod 0600 "$work/compose.env"
export CALLMUX_ENV_FILE=$work/compose.env CALLMUX_A_PORT=$PORT_A CALLMUX_B_PORT=$PORT_B
"${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml up -d >"$work/compose.log" 2>&1 \
    || { cat "$work/compose.log" >&2; die "podman-compose up"; }
for p in $PORT_A $PORT_B; do
    wait_for "http://127.0.0.1:$p/readyz" 60 || { "${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml logs >&2 || true; die "replica on $p never ready"; }
done
# Both replicas on Redis ("ok", not "degraded"); Redis may take a moment to accept them.
for p in $PORT_A $PORT_B; do
    deadline=$((SECONDS + 30))
    until [ "$(get "http://127.0.0.1:$p/readyz" | json 'd["state"]')" = ok ]; do
        [ $SECONDS -lt $deadline ] || die "replica on $p: state $(get "http://127.0.0.1:$p/readyz" | json 'd["state"]')"
        sleep 0.5
    done
done
org=("authorization: $key" "x-bland-org-id: demo")
# compose.yaml's own healthchecks (podman runs them on demand here: no systemd timers).
for svc in redis callmux-a callmux-b; do
    id=$(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$svc")
    [ -n "$id" ] || die "compose: no running container for $svc"
    podman healthcheck run "$id" >/dev/null 2>>"$work/podman.log" || die "compose: $svc's healthcheck fails"
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'authorization: demo-key' -H 'x-bland-org-id: demo' \
    "http://127.0.0.1:$PORT_A/api/calls")" = 401 ] || die "compose: the published demo-key was accepted"
listed=$(get "http://127.0.0.1:$PORT_A/api/calls" "${org[@]}")
call=$(json 'd["calls"][0]["call_id"]' <<<"$listed")
echo "replica A: GET /api/calls -> $(json 'd["count"]' <<<"$listed") calls, first $call" >&2
ended=$(post "http://127.0.0.1:$PORT_B/api/calls/$call/end" "${org[@]}")
echo "replica B: POST /api/calls/$call/end -> $ended" >&2
[ "$(json 'd["success"]' <<<"$ended")" = True ] || die "compose: replica B did not end $call"
# The demo's `static` providers keep their calls in each replica's memory: the one that
# ended the call no longer lists it (a real platform would drop it for every replica).
get "http://127.0.0.1:$PORT_B/api/calls" "${org[@]}" | json 'd["calls"]' | grep -q "$call" \
    && die "compose: replica B still lists $call after ending it"
# Redis away: the replicas keep serving on their own ("degraded"), and rejoin when it is back.
state_of() { get "http://127.0.0.1:$1/readyz" | json 'd["state"]'; }
until_state() { # port state seconds: asks for the list meanwhile, so the replica uses Redis
    local deadline=$((SECONDS + $3))
    until [ "$(state_of "$1")" = "$2" ]; do
        [ $SECONDS -lt $deadline ] || die "replica on $1: state $(state_of "$1"), not $2 after $3 s"
        get "http://127.0.0.1:$1/api/calls" "${org[@]}" >/dev/null || die "replica on $1 stopped serving"
        sleep 0.5
    done
}
"${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml stop redis >>"$work/compose.log" 2>&1
until_state "$PORT_A" degraded 30
n=$(get "http://127.0.0.1:$PORT_A/api/calls" "${org[@]}" | json 'd["count"]')
echo "Redis stopped: replica A degraded, still lists $n calls" >&2
"${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml start redis >>"$work/compose.log" 2>&1
until_state "$PORT_A" ok 60
echo "Redis back: replica A state ok" >&2
"${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml down -t 15 >/dev/null 2>&1 || die "podman-compose down"
rm -f "$work/compose.env"

# ----------------------------------------------------------------- kubernetes
step "kubernetes: podman kube play deploy/kubernetes/"
# Kubernetes resolves the Service "redis"; podman has no Services, so the Redis pod joins
# a network with DNS under that alias. The Secret's values are made here (the committed
# file holds placeholders). Podman 4.3 resolves secretKeyRef from a podman secret holding a
# JSON map of key to base64 value (a Secret it plays itself is stored as YAML, which its
# secretKeyRef then cannot read), so the secret is made in that form.
podman network create "$KUBE_NET" >/dev/null
key=$(hex 24) pw=$(hex 24)
b64() { printf %s "$1" | base64 -w0; }
printf '{"DEMO_API_KEY": "%s", "REDIS_PASSWORD": "%s", "REDIS_URL": "%s", "STATE_SECRET": "%s"}' \
    "$(b64 "$key")" "$(b64 "$pw")" "$(b64 "redis://:$pw@redis:6379/0")" "$(b64 "$(hex 32)")" \
    | podman secret create callmux-secrets - >/dev/null
# The manifests as committed, in one stream each (podman skips the kinds it does not run:
# the Services and the PodDisruptionBudget).
cp deploy/kubernetes/redis.yaml "$work/kube-redis.yaml"
for f in configmap deployment service pdb; do
    echo ---; cat "deploy/kubernetes/$f.yaml"
done >"$work/kube-callmux.yaml"
podman kube play --network "$KUBE_NET:alias=redis" "$work/kube-redis.yaml" >"$work/kube.log" 2>&1 \
    || { cat "$work/kube.log" >&2; die "podman kube play redis.yaml"; }
podman kube play --network "$KUBE_NET" "$work/kube-callmux.yaml" >>"$work/kube.log" 2>&1 \
    || { cat "$work/kube.log" >&2; die "podman kube play deployment.yaml"; }
# Readiness: every callmux pod's /readyz answers, on the pod's own address.
ips=$(podman ps --filter label=app.kubernetes.io/name=callmux --filter status=running -q \
    | xargs -r podman inspect --format "{{(index .NetworkSettings.Networks \"$KUBE_NET\").IPAddress}}" | sort -u)
[ -n "$ips" ] || { cat "$work/kube.log" >&2; podman ps -a >&2; die "no callmux pod is running"; }
for ip in $ips; do
    wait_for "http://$ip:8080/readyz" 60 || { podman pod logs callmux-pod-0 >&2 || true; die "pod $ip never ready"; }
    state=$(get "http://$ip:8080/readyz" | json 'd["state"]')
    n=$(get "http://$ip:8080/api/calls" "authorization: $key" "x-bland-org-id: demo" | json 'd["count"]')
    echo "pod $ip: ready, state $state, $n calls" >&2
done
podman kube down "$work/kube-callmux.yaml" >/dev/null 2>>"$work/podman.log"
podman kube down "$work/kube-redis.yaml" >/dev/null 2>>"$work/podman.log"

step "done: image, compose and kubernetes all ran"
