#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own php-fpm and drive real
# clients, so what they need is installed first when missing (Debian/Ubuntu;
# needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

have_php_fpm || apt_install php-fpm
# tests/suite/dokuwiki.rs needs Debian's DokuWiki (a real PHP application);
# after php-fpm, so apt picks php-fpm for its `php` dependency.
[[ -f /usr/share/dokuwiki/doku.php ]] || apt_install --no-install-recommends dokuwiki
# tests/suite/tls.rs needs real clients: curl, h2load (nghttp2-client), openssl.
have_commands h2load curl openssl || apt_install nghttp2-client curl openssl
# tests/suite/doctor.rs runs a deliberately misconfigured nginx in front of
# php-fpm (it starts its own, on a port of its own).
have_commands nginx || apt_install --no-install-recommends nginx
# tests/suite/reload.rs needs systemd-socket-activate and systemd-analyze
# (package systemd; systemd need not be running).
have_commands systemd-socket-activate systemd-analyze || apt_install systemd
# tests/suite/bench_link.rs puts php-fpm in network namespaces (ip, iproute2).
have_commands ip || apt_install iproute2
# Everything once with 2 serving threads (--workers 2: requests spread over
# threads that share one php-fpm), then the HTTP suite again with 1.
FCGI_GATEWAY_TEST_WORKERS=2 cargo test "$@"
FCGI_GATEWAY_TEST_WORKERS=1 cargo test --test suite "$@"
