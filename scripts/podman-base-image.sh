#!/usr/bin/env bash
# Make the base image `debian:bookworm-slim` locally from debootstrap when it is missing:
# images are built without access to a container registry, only to Debian's package mirror.
set -euo pipefail
source "$(dirname "$0")/podman-env.sh"
IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if "${PODMAN[@]}" image exists "$IMAGE"; then
    exit 0
fi
rootfs="$(mktemp -d /tmp/ipgeo-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "podman-base-image: debootstrap bookworm into $rootfs"
debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
# Trim what a container never needs, like the official slim image does, and keep later
# package installs from bringing it back.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda
cat > "$rootfs"/etc/dpkg/dpkg.cfg.d/slim <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
cat > "$rootfs"/etc/apt/apt.conf.d/slim <<'CFG'
APT::Install-Recommends "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
tar -C "$rootfs" -c . | "${PODMAN[@]}" import \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "podman-base-image: imported $IMAGE"
