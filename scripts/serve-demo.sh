#!/usr/bin/env bash
# Serves fixtures/demo through the gateway's embedded php-fpm:
#   bash scripts/serve-demo.sh [LISTEN]   (default 127.0.0.1:8080)
# Installs php-fpm with apt-get when it is missing (needs root or sudo).
# With no --upstream the gateway starts php-fpm itself on a private unix
# socket and stops it on exit; PHP_FPM_BIN names a particular binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
listen="${1:-127.0.0.1:8080}"

have_php_fpm || apt_install php-fpm

fpm_flag=()
[[ -n "${PHP_FPM_BIN:-}" ]] && fpm_flag=(--php-fpm "$PHP_FPM_BIN")

cargo build --release --quiet
echo "fcgi-gateway: open http://$listen/ (Ctrl-C stops the gateway and its php-fpm)" >&2
exec ./target/release/fcgi-gateway serve --listen "$listen" \
    --root fixtures/demo --front-controller /index.php "${fpm_flag[@]}"
