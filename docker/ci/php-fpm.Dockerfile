# CI stand-in for the official php:8.2-fpm image, for machines that reach
# Debian's packages but no image registry (scripts/compose-test.sh builds it
# FROM a base image it made with debootstrap). It keeps what compose.yaml
# relies on in the official image:
#   - `php-fpm` on PATH runs the master in the foreground, logging to stderr;
#   - the pools are read from /usr/local/etc/php-fpm.d/*.conf, in name order;
#   - pool [www] runs as www-data and listens on port 9000 (zz-docker.conf),
#     so a later file there (zz-gateway.conf) can move it elsewhere;
#   - stop with SIGQUIT (php-fpm's graceful stop).
# It is Debian's php8.2-fpm, so PHP's own configuration (php.ini, extensions)
# is Debian's, not the official image's.
#   podman build -f docker/ci/php-fpm.Dockerfile --build-arg BASE_IMAGE=... docker/ci
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends php8.2-fpm \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/php/8.2/fpm/pool.d/*.conf
COPY php-fpm.conf /usr/local/etc/php-fpm.conf
COPY php-fpm.d/ /usr/local/etc/php-fpm.d/
# Debian's php-fpm8.2 reads /etc/php/8.2/fpm/php-fpm.conf: point it at ours.
RUN ln -sf /usr/local/etc/php-fpm.conf /etc/php/8.2/fpm/php-fpm.conf \
    && ln -s /usr/sbin/php-fpm8.2 /usr/local/sbin/php-fpm \
    && php-fpm --test
WORKDIR /var/www/html
STOPSIGNAL SIGQUIT
EXPOSE 9000
CMD ["php-fpm"]
