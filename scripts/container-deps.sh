#!/usr/bin/env bash
# Install what `make test-containers` needs (podman, runc, debootstrap, podman-compose), only
# when something is missing.
set -euo pipefail
packages=(podman runc debootstrap podman-compose)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "container-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Another process may hold the apt lock for a moment: wait for it rather than fail.
for attempt in 1 2 3 4 5 6; do
    if $SUDO apt-get -o DPkg::Lock::Timeout=120 update -q \
        && $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "${missing[@]}"; then
        exit 0
    fi
    echo "container-deps: apt-get failed (attempt $attempt), retrying" >&2
    sleep 10
done
exit 1
