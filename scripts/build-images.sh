#!/usr/bin/env bash
# Build ipgeo's images with podman: base image from debootstrap when missing, wheels built on
# the host (pip inside an image build cannot verify the package index here), then the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/podman-env.sh
bash scripts/podman-base-image.sh
PY="${PYTHON:-.venv/bin/python}"
# Wheels for every dependency (kept between runs) and a fresh one of ipgeo itself.
"$PY" -m pip wheel -q --find-links wheelhouse -w wheelhouse '.[supervisor,debug]' 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' -e '^ *!!' -e '^ *\*\*\*' -e '^ *$' \
        -e 'corresp(' -e 'license' -e 'SPDX' -e 'Feb-18' -e 'or your builds' -e 'packaging.python.org' || true
"$PY" -m pip wheel -q --no-deps -w wheelhouse . >/dev/null 2>&1
targets=("${@:-runtime all-in-one redis postgis dev}")
for target in ${targets[@]}; do
    tag="ipgeo-$target"
    [ "$target" = runtime ] && tag=ipgeo
    echo "build-images: $target -> localhost/$tag:latest"
    "${PODMAN[@]}" build --quiet --format docker --build-arg WHEELS=host --target "$target" -t "$tag:latest" . >/dev/null
done
"${PODMAN[@]}" images --filter reference='localhost/ipgeo*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'
