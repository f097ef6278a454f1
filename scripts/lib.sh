# Shared by scripts/*.sh and .ci/run (sourced, not run).

# Installs Debian/Ubuntu packages, with sudo when not root.
apt_install() {
    local sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    echo "installing with apt-get: $*" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

# True when a php-fpm can be found the way the gateway and the tests look.
have_php_fpm() {
    [[ -n "${PHP_FPM_BIN:-}" ]] || compgen -c php-fpm >/dev/null 2>&1 || ls /usr/sbin/php-fpm* >/dev/null 2>&1
}

# True when every named command is on PATH.
have_commands() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || return 1
    done
}
