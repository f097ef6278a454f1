#!/usr/bin/env bash
# Hello-world PHP through fcgi-gateway vs nginx (upstream keepalive +
# fastcgi_keep_conn on), both in front of ONE php-fpm master with one pool
# per server and socket type (pm = static, 4 children each), driven by wrk. Rounds are interleaved
# so machine noise hits every cell; prints req/s per round and the median.
#
#   bash scripts/bench-vs-nginx.sh [ROUNDS] [DURATION] [CONNECTIONS] [PATH]
#   (defaults: 3 rounds, 5s, 32 connections, /hello.php)
# Needs: php-fpm, nginx, wrk (apt-get install php8.2-fpm nginx wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; duration="${2:-5s}"; conns="${3:-32}"; path="${4:-/hello.php}"

fpm="${PHP_FPM_BIN:-$(command -v php-fpm || ls /usr/sbin/php-fpm* 2>/dev/null | head -1)}"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet
dir="$(mktemp -d /tmp/fcgi-bench.XXXXXX)"
chmod 755 "$dir"  # nginx workers run as an unprivileged user and must reach the sockets
root="$PWD/fixtures/php"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fpm_port=$(free_port); ngx_unix=$(free_port); ngx_tcp=$(free_port); gw_unix=$(free_port); gw_tcp=$(free_port)

user=""; as_root=()
if [[ $(id -u) -eq 0 ]]; then user=$'user = root\ngroup = root'; as_root=(-R); fi
# One php-fpm master, one pool per (server, socket type): a kept-alive idle
# connection pins its worker, so servers sharing a pool would starve each other.
fpm_port_gw=$(free_port)
{
    printf '[global]\npid = %s/fpm.pid\nerror_log = %s/fpm.log\ndaemonize = no\n' "$dir" "$dir"
    for pool in nginx-unix gateway-unix nginx-tcp gateway-tcp; do
        case $pool in
            nginx-unix) listen="$dir/nginx.sock" ;;
            gateway-unix) listen="$dir/gateway.sock" ;;
            nginx-tcp) listen="127.0.0.1:$fpm_port" ;;
            gateway-tcp) listen="127.0.0.1:$fpm_port_gw" ;;
        esac
        printf '[%s]\n%s\nlisten = %s\nlisten.mode = 0666\npm = static\npm.max_children = 4\n' "$pool" "$user" "$listen"
    done
} > "$dir/fpm.conf"
"$fpm" "${as_root[@]}" -F -y "$dir/fpm.conf" & pids+=($!)

cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    upstream fpm_unix { server unix:$dir/nginx.sock; keepalive 4; }
    upstream fpm_tcp { server 127.0.0.1:$fpm_port; keepalive 4; }
    server {
        listen 127.0.0.1:$ngx_unix; root $root;
        location ~ \.php$ { include /etc/nginx/fastcgi.conf; fastcgi_keep_conn on; fastcgi_pass fpm_unix; }
    }
    server {
        listen 127.0.0.1:$ngx_tcp; root $root;
        location ~ \.php$ { include /etc/nginx/fastcgi.conf; fastcgi_keep_conn on; fastcgi_pass fpm_tcp; }
    }
}
CONF
"$nginx_bin" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" & pids+=($!)

# The gateway logs one access line per request; keep it off the benchmark's critical path.
./target/release/fcgi-gateway serve --listen 127.0.0.1:$gw_unix --upstream "unix:$dir/gateway.sock" \
    --root "$root" --log-level warn --max-upstream-conns 4 & pids+=($!)
./target/release/fcgi-gateway serve --listen 127.0.0.1:$gw_tcp --upstream "tcp:127.0.0.1:$fpm_port_gw" \
    --root "$root" --log-level warn --max-upstream-conns 4 & pids+=($!)

for port in $ngx_unix $ngx_tcp $gw_unix $gw_tcp; do
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port$path" 2>/dev/null && break
        sleep 0.1
    done
done

declare -A results
cells=("nginx-unix:$ngx_unix" "gateway-unix:$gw_unix" "nginx-tcp:$ngx_tcp" "gateway-tcp:$gw_tcp")
for cell in "${cells[@]}"; do wrk -t2 -c"$conns" -d1s "http://127.0.0.1:${cell#*:}$path" >/dev/null; done
for r in $(seq 1 "$rounds"); do
    for cell in "${cells[@]}"; do
        name="${cell%%:*}"; port="${cell#*:}"
        out=$(wrk -t2 -c"$conns" -d"$duration" --latency "http://127.0.0.1:$port$path")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p99=$(awk '$1=="99%" {print $2}' <<<"$out")
        errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
        results[$name]+="$rps "
        printf 'round %d  %-13s %10s req/s  p99 %-8s %s\n' "$r" "$name" "$rps" "$p99" "$errs"
    done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-8s %14s %14s %8s\n' socket "nginx req/s" "gateway req/s" ratio
for s in unix tcp; do
    n=$(median "${results[nginx-$s]}"); g=$(median "${results[gateway-$s]}")
    printf '%-8s %14s %14s %8.2f\n' "$s" "$n" "$g" "$(awk -v g="$g" -v n="$n" 'BEGIN {print g/n}')"
done
cat "$dir/nginx-error.log" | tail -3
echo "(wrk -t2 -c$conns -d$duration $path, median of $rounds interleaved rounds, php-fpm static 4 children per pool)"
