#!/usr/bin/env bash
# Install the Debian packages the test suites need, only when something is missing.
set -euo pipefail
packages=(redis-server)  # pytest-redis servers, the embedded Redis fallback
packages+=(nginx)  # nginx-in-front tests, `nginx -t` on generated configs
packages+=(chromium fonts-dejavu-core fonts-noto-color-emoji)  # browser tests (flags need emoji)
packages+=(wrk)  # tests/test_bench_http.py drives the benchmark's Lua script with it
packages+=(postgresql-15-postgis-3)  # private PostGIS servers for the time-zone tests
exec bash "$(dirname "$0")/apt-install-missing.sh" system-deps "${packages[@]}"
