#!/usr/bin/env bash
# Build ipgeo's images with podman: base image from debootstrap when missing, wheels built on
# the host (pip inside an image build cannot verify the package index here), then the targets.
# An image whose `ipgeo.inputs` label matches the hash of its inputs (Dockerfile, pyproject,
# src, deploy, scripts, the base image) is kept as it is; IPGEO_REBUILD=1 forces a build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/podman-env.sh
bash scripts/podman-base-image.sh
PY="${PYTHON:-.venv/bin/python}"
targets=("${@:-runtime all-in-one redis postgis dev}")

inputs_hash() {
    {
        "${PODMAN[@]}" image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}"
        find Dockerfile .containerignore pyproject.toml src deploy scripts -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
            | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-32
}
tag_of() { if [ "$1" = runtime ]; then echo ipgeo; else echo "ipgeo-$1"; fi; }

hash="$(inputs_hash)"
todo=()
for target in ${targets[@]}; do
    tag="$(tag_of "$target")"
    have="$("${PODMAN[@]}" image inspect -f '{{index .Labels "ipgeo.inputs"}}' "localhost/$tag:latest" 2>/dev/null || true)"
    if [ "${IPGEO_REBUILD:-0}" != 1 ] && [ "$have" = "$hash" ]; then
        echo "build-images: $target is up to date (inputs $hash)"
    else
        todo+=("$target")
    fi
done
if [ ${#todo[@]} -gt 0 ]; then
    # Reproducible wheel of ipgeo itself (same sources, same bytes): later layers stay cached.
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 315532800)"
    export SOURCE_DATE_EPOCH
    # Wheels for every dependency (kept between runs) and a fresh one of ipgeo itself.
    "$PY" -m pip wheel -q --find-links wheelhouse -w wheelhouse '.[supervisor,debug]' 2>&1 \
        | grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' -e '^ *!!' -e '^ *\*\*\*' -e '^ *$' \
            -e 'corresp(' -e 'license' -e 'SPDX' -e 'Feb-18' -e 'or your builds' -e 'packaging.python.org' || true
    # Debian's Python in the images is 3.11.2: redis needs async-timeout below 3.11.3, which a
    # newer host Python does not pull in.
    "$PY" -m pip wheel -q --find-links wheelhouse -w wheelhouse 'async-timeout>=4.0.3' 2>&1 \
        | grep -v -e '^WARNING: Location' || true
    "$PY" -m pip wheel -q --no-deps -w wheelhouse . >/dev/null 2>&1
    bash scripts/numpy-noblas-wheel.sh wheelhouse "$PY"
fi
for target in ${todo[@]+"${todo[@]}"}; do
    tag="$(tag_of "$target")"
    echo "build-images: $target -> localhost/$tag:latest"
    "${PODMAN[@]}" build --quiet --format docker --build-arg WHEELS=host --target "$target" \
        --label "ipgeo.inputs=$hash" -t "$tag:latest" . >/dev/null
done
"${PODMAN[@]}" images --filter reference='localhost/ipgeo*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'
