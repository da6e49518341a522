# Source this: the environment every podman call of the project runs with.
# shellcheck shell=bash
_ipgeo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="$_ipgeo_root/deploy/podman/containers.conf"
# crun is not available everywhere and behaves differently under nested sandboxes: always runc.
PODMAN=(podman --runtime runc)
unset _ipgeo_root
