#!/usr/bin/env bash
# Validates the Kubernetes deployments under deploy/kubernetes offline
# (docs/kubernetes.md): no cluster and no network beyond the package
# registries, which only the first run uses. For each directory with a
# kustomization.yaml, scripts/check-k8s.py
#   - validates every manifest it lists, and the `kubectl kustomize` output,
#     against the OpenAPI schemas of Kubernetes 1.25 and 1.37 that the
#     kubernetes-validate package bundles, strictly (unknown fields fail);
#   - parses each gateway.toml of the ConfigMaps with tomllib and checks its
#     keys against docs/configuration.md;
#   - checks what ties the objects together: probes on the admin port,
#     terminationGracePeriodSeconds against preStop sleeps, grace-period and
#     php-fpm's process_control_timeout, the upstream socket or headless
#     Service, the NetworkPolicy in front of php-fpm.
#
# Installs what it lacks: Debian's python3-venv, kubernetes-validate (pinned,
# with its dependencies, from PyPI) in a virtualenv under
# FCGI_GATEWAY_CI_CACHE (/var/cache/fcgi-gateway-ci), and kubectl (Debian's
# kubernetes-client) when there is none. Debian/Ubuntu, as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

started=$SECONDS
say() { echo "validate-k8s [$((SECONDS - started))s]: $*" >&2; }

if [[ -n ${FCGI_GATEWAY_CI_CACHE:-} ]]; then
    cache=$FCGI_GATEWAY_CI_CACHE
elif [[ -w /var/cache ]]; then
    cache=/var/cache/fcgi-gateway-ci
else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/fcgi-gateway
fi
# kubernetes-validate and everything it pulls in, pinned: the schemas and
# the validator's behaviour change only when this list does.
pins=(
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    attrs==26.1.0
    PyYAML==6.0.4
    packaging==26.4
    importlib_resources==7.1.0
    typing_extensions==4.16.0
)
# The oldest and the newest Kubernetes whose schemas kubernetes-validate
# 1.37.0 bundles.
kubernetes_versions=(1.25 1.37)

# --- tools --------------------------------------------------------------------
# Debian's Python (3.11 on bookworm: tomllib is in its standard library),
# not whatever python3 comes first on PATH.
missing=()
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
have_commands kubectl || missing+=(kubernetes-client)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { say "FAILED: /usr/bin/python3 is older than 3.11 (no tomllib)"; exit 1; }

venv=$cache/kubernetes-validate-venv
if [[ "$(cat "$venv/pins" 2>/dev/null)" != "${pins[*]}" ]]; then
    say "installing ${pins[0]} into $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${pins[@]}"
    "$venv/bin/python" -c 'import kubernetes_validate, yaml'
    echo "${pins[*]}" >"$venv/pins"
fi

# --- the checks -----------------------------------------------------------------
directories=()
for kustomization in deploy/kubernetes/*/kustomization.yaml; do
    directories+=("$(dirname "$kustomization")")
done
((${#directories[@]} > 0)) || { say "FAILED: no deploy/kubernetes/*/kustomization.yaml"; exit 1; }

version_args=()
for version in "${kubernetes_versions[@]}"; do
    version_args+=(-k "$version")
done
if "$venv/bin/python" scripts/check-k8s.py "${version_args[@]}" \
    --config-doc docs/configuration.md "${directories[@]}"; then
    say "passed: ${directories[*]}"
else
    say "FAILED (the lines above say what and where)"
    exit 1
fi
