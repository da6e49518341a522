# syntax=docker/dockerfile:1
# ipgeo images. Targets:
#   runtime     (default) the app image: uWSGI by default; also the worker and dashboard image
#   all-in-one  nginx + uWSGI under supervisord in one container
#   dev         runtime + debugpy, for compose.dev.yaml
#   redis, postgis  the other services of compose.yaml, from the same Debian base
#
# Wheels: by default the builder stage runs `pip wheel`. Where pip cannot reach the package
# index from inside a build, build them on the host (`pip wheel -w wheelhouse '.[supervisor,debug]'`)
# and pass `--build-arg WHEELS=host`.
ARG BASE_IMAGE=debian:bookworm-slim
ARG WHEELS=build

FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Debian's Python 3.11; the venv from the builder links to this very interpreter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    /usr/share/doc/* /usr/share/man/* /usr/share/locale/* /usr/share/info/*

FROM base AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv

# Wheels built inside the image build (normal network access).
FROM builder AS wheels-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy ./deploy
COPY src ./src
COPY scripts/numpy-noblas-wheel.sh ./scripts/
RUN /opt/venv/bin/pip wheel --no-cache-dir -w /wheelhouse '.[supervisor,debug]'
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ python3-dev \
 && bash scripts/numpy-noblas-wheel.sh /wheelhouse /opt/venv/bin/python

# Wheels built on the host into ./wheelhouse.
FROM scratch AS wheels-host
COPY wheelhouse /wheelhouse

FROM wheels-${WHEELS} AS wheels

FROM builder AS venv
# COPY, not a bind mount: the build cache must notice a changed wheel.
COPY --from=wheels /wheelhouse /wheelhouse
# numpy without BLAS first (scripts/numpy-noblas-wheel.sh: PyPI's wheel bundles a 28 MB
# OpenBLAS that nothing here uses); ipgeo's install then finds numpy already satisfied.
# psycopg runs its pure-Python implementation on Debian's libpq5 (ipgeo-base) instead of
# psycopg-binary's bundled libpq, OpenSSL and Kerberos (12 MB).
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse/noblas numpy \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse \
        'ipgeo[supervisor]' \
 && /opt/venv/bin/pip uninstall -y pip setuptools wheel psycopg-binary \
 && find /opt/venv -depth \( -name __pycache__ -o -name tests -o -name '*.pyi' \) -exec rm -rf {} + \
 # numpy serves timezonefinder, shapely and the bulk engine: drop only its build-time parts
 # (numpy.ma, random, fft… are imported at run time by the bulk jobs; tests_containers runs
 # a polygon lookup and a bulk job in the image).
 && cd /opt/venv/lib/python3.11/site-packages/numpy \
 && rm -rf f2py distutils _core/include _pyinstaller _core/_simd.*.so \
 && cd / \
 # Data packages (the bundled GeoLite2 database, the time-zone polygons) go into a layer of
 # their own: they are most of the bytes and change least often.
 && mkdir -p /opt/data-layer \
 && mv /opt/venv/lib/python3.11/site-packages/_geoip_geolite2 \
       /opt/venv/lib/python3.11/site-packages/timezonefinder_data /opt/data-layer/

FROM venv AS venv-dev
RUN /opt/venv/bin/python -m ensurepip >/dev/null \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /wheelhouse debugpy watchfiles

# The user and directories every ipgeo image has.
FROM base AS ipgeo-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 ipgeo \
 && useradd --system --uid 10001 --gid ipgeo --home-dir /var/lib/ipgeo --shell /usr/sbin/nologin ipgeo \
 && install -d -o ipgeo -g ipgeo -m 0750 /var/lib/ipgeo /run/ipgeo

# The runtime's file system, trimmed of what only package management needs (perl, apt,
# dpkg's file lists, iconv modules) and of Python modules a server never imports. It is
# copied into an empty image below, so the deletions really shrink it.
FROM ipgeo-base AS runtime-root
COPY --from=venv /opt/venv /opt/venv
RUN rm -rf /usr/bin/perl* /usr/lib/x86_64-linux-gnu/perl-base /usr/share/perl5 \
        /usr/bin/apt* /usr/lib/apt /usr/lib/x86_64-linux-gnu/libapt-* /etc/apt \
        /var/lib/dpkg/info /usr/share/debconf /var/cache/debconf /usr/share/common-licenses \
        /usr/lib/x86_64-linux-gnu/gconv /usr/lib/x86_64-linux-gnu/libdb-5.3.so \
        /usr/lib/python3.11/test /usr/lib/python3.11/pydoc_data /usr/lib/python3.11/idlelib \
        /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/ensurepip /usr/lib/python3.11/tkinter \
        /usr/lib/python3.11/turtledemo /usr/lib/python3.11/lib-dynload/_sqlite3.* \
        /usr/lib/python3.11/lib-dynload/_dbm.* \
        /usr/lib/python3.11/distutils /usr/lib/x86_64-linux-gnu/libsqlite3.so* /usr/bin/openssl \
        /usr/bin/gpgv \
        /var/log/* /var/cache/* /tmp/* \
 # The standard library as bytecode only (legacy .pyc next to where the .py was): tracebacks
 # show no source lines for stdlib frames; ipgeo's and the other packages' sources stay.
 && python3 -m compileall -q -b -j 0 /usr/lib/python3.11 \
 && find /usr/lib/python3.11 -name '*.py' -delete \
 && find /usr/lib/python3.11 -name __pycache__ -prune -exec rm -rf {} + \
 # Fail the build if anything left needs a library that was just removed, if numpy is not
 # the build without BLAS, or if psycopg cannot load libpq.
 && ! { find /opt/venv /usr/lib/python3.11/lib-dynload /usr/bin /usr/sbin \
          /usr/lib/x86_64-linux-gnu/libpq.so.5.* -type f \
          \( -name '*.so*' -o -perm -u+x \) -exec ldd {} + 2>/dev/null | grep 'not found'; } \
 && test ! -e /opt/venv/lib/python3.11/site-packages/numpy.libs \
 && /opt/venv/bin/python -c 'import numpy, psycopg; print("libpq", psycopg.pq.version())'

FROM scratch AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ipgeo" \
      org.opencontainers.image.description="Self-hosted IP geolocation web service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/ipgeo/ipgeo" \
      org.opencontainers.image.documentation="https://github.com/ipgeo/ipgeo#deployment"
# Data first, in a layer of its own: it changes least often and is shared across versions.
COPY --from=venv /opt/data-layer/ /opt/venv/lib/python3.11/site-packages/
COPY --from=runtime-root / /
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    IPGEO_DATA_DIR=/var/lib/ipgeo \
    IPGEO_DEPLOY_DIR=/opt/venv/lib/python3.11/site-packages/ipgeo/deploy \
    UWSGI_SOCKET=:3031
USER ipgeo
WORKDIR /var/lib/ipgeo
VOLUME ["/var/lib/ipgeo"]
EXPOSE 3031
# The app speaks the uwsgi protocol to nginx; the check talks it too (GET /healthz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["ipgeo", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec uwsgi --ini \"$IPGEO_DEPLOY_DIR/uwsgi.ini\""]

FROM runtime AS dev
COPY --from=venv-dev /opt/venv /opt/venv

# nginx + uWSGI under supervisord. Not trimmed like runtime: it keeps apt for nginx.
FROM ipgeo-base AS all-in-one
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ipgeo-all-in-one" \
      org.opencontainers.image.description="ipgeo: nginx and uWSGI under supervisord" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/ipgeo/ipgeo"
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 # nginx runs as ipgeo with everything under /run/ipgeo; the packaged site is not used.
 && rm -f /etc/nginx/sites-enabled/default
COPY --from=venv /opt/data-layer/ /opt/venv/lib/python3.11/site-packages/
COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    IPGEO_DATA_DIR=/var/lib/ipgeo \
    IPGEO_DEPLOY_DIR=/opt/venv/lib/python3.11/site-packages/ipgeo/deploy \
    UWSGI_SOCKET=/run/ipgeo/uwsgi.sock
USER ipgeo
WORKDIR /var/lib/ipgeo
VOLUME ["/var/lib/ipgeo"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["ipgeo", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
CMD ["sh", "-c", "exec supervisord -c \"$IPGEO_DEPLOY_DIR/supervisord.conf\""]

FROM base AS redis
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && install -d -o redis -g redis /data
USER redis
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["redis-cli", "ping"]
# Append-only file fsync'ed every second: visit counters survive restarts.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", \
     "--appendonly", "yes", "--appendfsync", "everysec"]

FROM base AS postgis
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15-postgis-3 \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && install -d -o postgres -g postgres /var/lib/postgresql/data /run/postgresql
COPY deploy/postgis-entrypoint.sh /usr/local/bin/postgis-entrypoint
USER postgres
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=10 \
    CMD ["sh", "-c", "pg_isready -h 127.0.0.1 -U \"${POSTGRES_USER:-ipgeo}\" -d \"${POSTGRES_DB:-ipgeo}\""]
STOPSIGNAL SIGINT
CMD ["postgis-entrypoint"]
