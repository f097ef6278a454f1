#!/usr/bin/env bash
# Serves fixtures/demo through a real php-fpm on a private unix socket:
#   bash scripts/serve-demo.sh [LISTEN]   (default 127.0.0.1:8080)
# Installs php-fpm with apt-get when it is missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
listen="${1:-127.0.0.1:8080}"

find_fpm() {
    if [[ -n "${PHP_FPM_BIN:-}" ]]; then echo "$PHP_FPM_BIN"; return; fi
    for c in php-fpm $(compgen -c php-fpm 2>/dev/null | sort -u) /usr/sbin/php-fpm*; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return; fi
    done
}

fpm="$(find_fpm || true)"
if [[ -z "$fpm" ]]; then
    echo "php-fpm not found; installing it with apt-get" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq php-fpm >/dev/null
    fpm="$(find_fpm)"
fi

run_dir="$(mktemp -d /tmp/fcgi-gateway-demo.XXXXXX)"
user_line=""
run_as_root=()
if [[ $(id -u) -eq 0 ]]; then
    user_line=$'user = root\ngroup = root'
    run_as_root=(-R)
fi
cat > "$run_dir/php-fpm.conf" <<CONF
[global]
pid = $run_dir/php-fpm.pid
error_log = /proc/self/fd/2
daemonize = no

[demo]
$user_line
listen = $run_dir/php-fpm.sock
listen.mode = 0600
pm = static
pm.max_children = 4
catch_workers_output = yes
decorate_workers_output = no
php_admin_value[output_buffering] = 0
CONF

"$fpm" "${run_as_root[@]}" -F -y "$run_dir/php-fpm.conf" &
fpm_pid=$!
cleanup() {
    kill -TERM "$fpm_pid" 2>/dev/null || true
    wait "$fpm_pid" 2>/dev/null || true
    rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
    [[ -S "$run_dir/php-fpm.sock" ]] && break
    sleep 0.1
done
[[ -S "$run_dir/php-fpm.sock" ]] || { echo "php-fpm did not start" >&2; exit 1; }

cargo build --release --quiet
echo "fcgi-gateway: open http://$listen/ (Ctrl-C stops the gateway and php-fpm)" >&2
./target/release/fcgi-gateway serve --listen "$listen" \
    --upstream "unix:$run_dir/php-fpm.sock" \
    --root fixtures/demo --front-controller /index.php
