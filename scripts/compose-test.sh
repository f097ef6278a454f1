#!/usr/bin/env bash
# Builds and runs the dev stack of docker/compose.yaml for real, with podman
# and podman-compose, on a machine that reaches Debian's packages but no image
# registry and has loopback only (as CI does), then fetches pages through the
# gateway over the unix socket and over TCP. Runs as root (or with sudo for
# the installs); Debian/Ubuntu.
#
# - Images: a Debian bookworm base made with debootstrap from the apt mirror
#   this machine uses, imported into podman; Debian's php8.2-fpm on top of it
#   shaped like the official php:8.2-fpm (docker/ci/php-fpm.Dockerfile); the
#   gateway image from docker/Dockerfile's `prebuilt` target, with the binary
#   built here by cargo. compose.yaml gets them through RUNTIME_IMAGE and
#   PHP_FPM_IMAGE.
# - Networking: docker/ci/compose.test.yaml puts the containers on the host's
#   network (or none), on ports COMPOSE_TEST_UNIX_PORT (gateway over the
#   socket, 18480), COMPOSE_TEST_TCP_PORT (gateway over TCP, 18481) and
#   COMPOSE_TEST_FPM_PORT (php-fpm of the tcp profile, 18482).
# - State: podman here has a configuration and a storage of its own under
#   FCGI_GATEWAY_CI_CACHE (/var/cache/fcgi-gateway-ci), so the machine's own
#   podman setup is left alone and the next run finds the base image, the
#   debootstrap tarball and the build layers there. Delete that directory to
#   start from scratch.
# Everything the run creates (containers, the socket volume) is removed when
# it ends, passed or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

cache=${FCGI_GATEWAY_CI_CACHE:-/var/cache/fcgi-gateway-ci}
run_dir=/run/fcgi-gateway-ci
project=fcgi-gateway-ci
suite=bookworm
base_image=localhost/fcgi-gateway-ci/debian:$suite-minbase
php_image=localhost/fcgi-gateway-ci/php:8.2-fpm
# Debian's podman-compose (1.0.3 in bookworm) cannot run this stack: it has no
# profiles, always adds a compose network next to network_mode, and appends an
# override's command to the base one. So a pinned release from PyPI, in a
# virtualenv of its own.
podman_compose_version=1.6.0
export COMPOSE_TEST_UNIX_PORT=${COMPOSE_TEST_UNIX_PORT:-18480}
export COMPOSE_TEST_TCP_PORT=${COMPOSE_TEST_TCP_PORT:-18481}
export COMPOSE_TEST_FPM_PORT=${COMPOSE_TEST_FPM_PORT:-18482}

started=$SECONDS
say() { echo "compose-test [$((SECONDS - started))s]: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

# --- tools ------------------------------------------------------------------
missing=()
have_commands podman || missing+=(podman)
have_commands debootstrap || missing+=(debootstrap)
have_commands curl || missing+=(curl)
/usr/bin/python3 -c 'import venv, ensurepip, yaml, dotenv' 2>/dev/null \
    || missing+=(python3-venv python3-yaml python3-dotenv)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

venv=$cache/podman-compose-$podman_compose_version
if [[ ! -x $venv/bin/podman-compose ]]; then
    say "installing podman-compose $podman_compose_version into $venv"
    rm -rf "$venv"
    # System site packages: PyYAML and python-dotenv come from Debian.
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "podman-compose==$podman_compose_version"
fi
podman_compose=$venv/bin/podman-compose

# --- podman's configuration and storage, ours only ---------------------------
mkdir -p "$cache/etc" "$run_dir"
{
    echo '# Written by scripts/compose-test.sh; used through CONTAINERS_CONF.'
    echo '[containers]'
    # The defaults ask for more open files than a container may get here.
    echo 'default_ulimits = []'
    echo '[network]'
    echo "network_config_dir = \"$cache/networks\""
    echo '[engine]'
    echo "tmp_dir = \"$run_dir/libpod\""
    if [[ ! -d /run/systemd/system ]]; then
        # No systemd running: no systemd cgroups and no journal.
        echo 'cgroup_manager = "cgroupfs"'
        echo 'events_logger = "file"'
    fi
} >"$cache/etc/containers.conf"
cat >"$cache/etc/storage.conf" <<EOF
# Written by scripts/compose-test.sh; used through CONTAINERS_STORAGE_CONF.
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$run_dir/storage"
EOF
export CONTAINERS_CONF=$cache/etc/containers.conf
export CONTAINERS_STORAGE_CONF=$cache/etc/storage.conf

# --- the Debian base image ---------------------------------------------------
# The first "deb" source of this machine whose suites include $suite (one-line
# .list files and deb822 .sources files); DEBIAN_MIRROR overrides.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                for (j = i + 1; j <= NF; j++) if ($j == suite) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/ || $i !~ /:/) continue
                    key = tolower($i); sub(/:.*/, "", key)
                    val = $i; sub(/^[^:]*:[ \t]*/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                n = split(suites, s, /[ \t]+/)
                if (enabled != "no" && (" " types " ") ~ / deb /)
                    for (j = 1; j <= n; j++)
                        if (s[j] == suite) { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f"
    done
}

# apt settings of this machine that decide how its mirror is reached (a proxy,
# a snapshot mirror's expired Release files), carried into the base image.
host_acquire_settings() {
    local key val
    for key in Acquire::http::Proxy Acquire::https::Proxy \
        Acquire::Check-Valid-Until Acquire::Check-Date; do
        val=$(apt-config dump "$key" 2>/dev/null | sed -n "s/^$key \"\(.*\)\";\$/\1/Ip" | head -n1)
        [[ -z $val ]] || printf '%s "%s";\n' "$key" "$val"
    done
}

tarball=$cache/debian-$suite-minbase.tar
imported_stamp=$cache/debian-$suite-minbase.imported
if [[ ! -s $tarball ]]; then
    mirror=${DEBIAN_MIRROR:-$(debian_mirror | head -n1)}
    [[ -n $mirror ]] || die "no apt source for $suite found in /etc/apt; set DEBIAN_MIRROR"
    say "debootstrap --variant=minbase $suite from $mirror"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    # Removed whether debootstrap succeeds or not.
    trap 'rm -rf "$rootfs"' EXIT
    proxy=$(apt-config dump Acquire::http::Proxy | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p')
    http_proxy=${http_proxy:-$proxy} debootstrap --variant=minbase "$suite" "$rootfs" "${mirror%/}" \
        >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/debootstrap.log" >&2; die "debootstrap (log: $cache/debootstrap.log)"; }
    host_acquire_settings >"$rootfs/etc/apt/apt.conf.d/90fcgi-gateway-ci"
    # What a container image does without: the downloaded packages and lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
    rm -f "$imported_stamp"
fi
if [[ ! -f $imported_stamp ]] || ! podman image exists "$base_image"; then
    say "importing $tarball as $base_image"
    podman import --quiet --change 'CMD ["bash"]' "$tarball" "$base_image" >/dev/null
    touch "$imported_stamp"
fi

# --- the php-fpm image and the gateway binary ----------------------------------
# The build's RUN steps need the network (apt) and only the host's works.
say "building $php_image"
podman build --quiet --network host --build-arg BASE_IMAGE="$base_image" \
    -f docker/ci/php-fpm.Dockerfile -t "$php_image" docker/ci >/dev/null

# The dev profile, as `cargo test` builds the binary: CI then compiles the
# crate and its dependencies once for both (a release build of its own
# added ~6 minutes to a fresh clone's run). What is checked here is that
# the stack is wired right, not how fast the binary is.
say "cargo build --locked --bin fcgi-gateway"
cargo build --locked --bin fcgi-gateway
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# The Dockerfile copies it from inside the build context, wherever cargo's
# target directory is.
mkdir -p target/compose-test
cp -p "$target_dir/debug/fcgi-gateway" target/compose-test/fcgi-gateway
export GATEWAY_BINARY=target/compose-test/fcgi-gateway
export RUNTIME_IMAGE=$base_image PHP_FPM_IMAGE=$php_image
# RUST_IMAGE stays the official one: the `prebuilt` target never uses it.

# --- the stack -----------------------------------------------------------------
compose() {
    "$podman_compose" --in-pod=false -p "$project" \
        -f docker/compose.yaml -f docker/ci/compose.test.yaml "$@"
}

# Our storage holds only what this script makes, so every container there
# carrying our project's label is one this script started.
our_containers() {
    podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'
}

dump_logs() {
    local name
    for name in $(our_containers); do
        echo "----- podman logs $name" >&2
        podman logs "$name" >&2 || true
    done
    echo "----- end of container logs" >&2
}

teardown() {
    local profile_args=(--profile tcp)
    compose "${profile_args[@]}" down --volumes --timeout 5 >/dev/null 2>&1 || true
    # Whatever down missed (a run cut short half-way up): ours by label.
    local left
    left=$(our_containers)
    [[ -z $left ]] || podman rm --force --volumes $left >/dev/null 2>&1 || true
    podman volume rm --force "${project}_php-socket" >/dev/null 2>&1 || true
}

on_exit() {
    local rc=$?
    if ((rc != 0)); then
        say "failed; logs of every container of the stack follow"
        dump_logs
    fi
    teardown
    rm -f "$body"
    say "done in $((SECONDS - started))s (exit $rc)"
    exit "$rc"
}

# A stack left by an earlier run that was killed: remove it first.
teardown
body=$(mktemp)
trap on_exit EXIT
# Killed or interrupted: still through on_exit.
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in "$COMPOSE_TEST_UNIX_PORT" "$COMPOSE_TEST_TCP_PORT" "$COMPOSE_TEST_FPM_PORT"; do
    port_free "$port" || die "port $port on 127.0.0.1 is taken; set COMPOSE_TEST_*_PORT"
done

# fetch NAME URL MARKER... [-- CURL_ARGS...]: status 200 and every marker (a
# grep -E pattern) in the body. Retries for a while: php-fpm and the gateway
# take a moment to start.
fetch() {
    local name=$1 url=$2 markers=() curl_args=() status= marker tries=0
    shift 2
    while (($#)) && [[ $1 != -- ]]; do markers+=("$1"); shift; done
    (($#)) && { shift; curl_args=("$@"); }
    while :; do
        status=$(curl -sS --max-time 10 -o "$body" -w '%{http_code}' "${curl_args[@]}" "$url" 2>/dev/null) || status=000
        [[ $status == 200 ]] && break
        ((++tries < 60)) || break
        sleep 0.5
    done
    if [[ $status != 200 ]]; then
        say "$name: $url answered $status; body:"
        head -c 2000 "$body" >&2
        die "$name"
    fi
    for marker in "${markers[@]}"; do
        grep -Eq -- "$marker" "$body" || {
            say "$name: $url: no match for /$marker/ in the body:"
            head -c 2000 "$body" >&2
            die "$name"
        }
    done
    say "ok: $name ($url)"
}

# check_gateway PORT TRANSPORT: the demo app through one gateway. Each marker
# is something only PHP could have written (the raw source has none of them).
check_gateway() {
    local base=http://127.0.0.1:$1 how=$2
    fetch "demo page over $how" "$base/" \
        'through php-fpm, PHP 8\.2\.[0-9]+' '<title>fcgi-gateway demo</title>'
    fetch "form post over $how" "$base/" \
        'Nice to meet you, <strong>compose-test</strong>' -- --data-urlencode name=compose-test
    fetch "info.php over $how" "$base/info.php/some/path?x=1" \
        '<dt>PATH_INFO</dt><dd><code>/some/path</code>' \
        '<dt>QUERY_STRING</dt><dd><code>x=1</code>'
    fetch "front controller over $how" "$base/no/such/page" 'through php-fpm, PHP 8\.2\.'
    fetch "stream.php over $how" "$base/stream.php" '^tick 1 of 5 at ' '^tick 5 of 5 at '
}

say "building the gateway image through compose (target prebuilt)"
compose --podman-build-args=--network=host build gateway

say "default profile: php-fpm on a unix socket shared through a volume"
compose up --detach
check_gateway "$COMPOSE_TEST_UNIX_PORT" "the unix socket"
running=$(podman ps --filter "label=io.podman.compose.project=$project" \
    --format '{{index .Labels "com.docker.compose.service"}}' | sort | xargs)
[[ $running == "gateway php" ]] || die "default profile runs [$running], not [gateway php]"
compose down --volumes --timeout 5

say "tcp profile: adds php-fpm over TCP"
compose --profile tcp up --detach
check_gateway "$COMPOSE_TEST_TCP_PORT" "TCP"
check_gateway "$COMPOSE_TEST_UNIX_PORT" "the unix socket (tcp profile)"
running=$(podman ps --filter "label=io.podman.compose.project=$project" \
    --format '{{index .Labels "com.docker.compose.service"}}' | sort | xargs)
[[ $running == "gateway gateway-tcp php php-tcp" ]] || die "tcp profile runs [$running]"
compose --profile tcp down --volumes --timeout 5

# Gateway images that a newer build has replaced.
podman image prune --force >/dev/null
say "all checks passed"
