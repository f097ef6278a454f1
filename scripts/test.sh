#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own php-fpm, so install it
# first when it is missing, and DokuWiki for the real-application test
# (Debian/Ubuntu; needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

have_fpm() {
    [[ -n "${PHP_FPM_BIN:-}" ]] || compgen -c php-fpm >/dev/null 2>&1 || ls /usr/sbin/php-fpm* >/dev/null 2>&1
}
if ! have_fpm; then
    echo "php-fpm not found; installing it with apt-get" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq php-fpm >/dev/null
fi
# tests/suite/dokuwiki.rs needs Debian's DokuWiki (a real PHP application).
if [[ ! -f /usr/share/dokuwiki/doku.php ]]; then
    echo "DokuWiki not found; installing it with apt-get" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends dokuwiki >/dev/null
fi
# tests/suite/tls.rs needs real clients: curl, h2load (nghttp2-client), openssl.
if ! command -v h2load >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 \
    || ! command -v openssl >/dev/null 2>&1; then
    echo "h2load, curl or openssl not found; installing them with apt-get" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nghttp2-client curl openssl >/dev/null
fi
# tests/suite/reload.rs needs systemd-socket-activate and systemd-analyze
# (package systemd; systemd need not be running).
if ! command -v systemd-socket-activate >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd tools not found; installing systemd with apt-get" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq systemd >/dev/null
fi
cargo test "$@"
