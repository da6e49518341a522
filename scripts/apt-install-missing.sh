#!/usr/bin/env bash
# Install the given Debian packages, only those not installed yet; wait out a held apt lock.
# Usage: apt-install-missing.sh LABEL PACKAGE...
set -euo pipefail
label=$1
shift
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "$label: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Another process may hold the apt lock for a moment: wait for it rather than fail.
for attempt in 1 2 3 4 5 6; do
    if $SUDO apt-get -o DPkg::Lock::Timeout=120 update -q \
        && $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "${missing[@]}"; then
        exit 0
    fi
    echo "$label: apt-get failed (attempt $attempt), retrying" >&2
    sleep 10
done
exit 1
