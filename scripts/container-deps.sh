#!/usr/bin/env bash
# Install what `make test-containers` needs (podman, runc, debootstrap, podman-compose; CNI's
# dnsname plugin, without which containers cannot resolve each other's names when podman runs
# without its recommended packages; a C/C++ compiler and Python's headers for the numpy wheel
# without BLAS), only when something is missing.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install-missing.sh" container-deps \
    podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname \
    gcc g++ python3-dev
