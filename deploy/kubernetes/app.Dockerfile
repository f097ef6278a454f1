# The two images deploy/kubernetes runs: the gateway and php-fpm, each with
# the PHP application copied to the SAME path, /srv/app. The gateway serves
# static files from there and sends php-fpm SCRIPT_FILENAME=/srv/app/...,
# which php-fpm opens in its own container: when the copies differ, or sit
# at different paths, php-fpm answers "File not found.".
#
# The build context is the application directory itself, and both targets
# copy that one context, so the two images always carry the same files
# (build them from the same checkout, one right after the other):
#
#   docker build -f docker/Dockerfile -t fcgi-gateway:dev .
#   docker build -f deploy/kubernetes/app.Dockerfile --target gateway \
#       -t fcgi-gateway:latest fixtures/demo
#   docker build -f deploy/kubernetes/app.Dockerfile --target php-fpm \
#       -t fcgi-gateway-php-fpm:latest fixtures/demo
#
# (podman build takes the same arguments.) GATEWAY_IMAGE is the gateway
# without an application, as docker/Dockerfile builds it; PHP_FPM_IMAGE is
# the official php-fpm image or anything laid out like it (pools read from
# /usr/local/etc/php-fpm.d/*.conf, `php-fpm` in the foreground, a www-data
# user with uid 33, STOPSIGNAL SIGQUIT). docs/kubernetes.md has the rest.
ARG GATEWAY_IMAGE=fcgi-gateway:dev
ARG PHP_FPM_IMAGE=php:8.2-fpm

FROM ${GATEWAY_IMAGE} AS gateway
# Owned by root and not writable by the gateway's user: nothing that runs
# can change the code. Directories the application writes to (uploads,
# caches) are volumes, mounted at the same path in both containers.
COPY . /srv/app

FROM ${PHP_FPM_IMAGE} AS php-fpm
COPY . /srv/app
