#!/usr/bin/env bash
# Install what `make test-containers` needs (podman, runc, debootstrap, podman-compose), only
# when something is missing.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install-missing.sh" container-deps \
    podman runc debootstrap podman-compose
