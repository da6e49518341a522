#!/usr/bin/env bash
# Build numpy without BLAS/LAPACK (its own loops and bundled lapack-lite) into WHEELHOUSE/noblas,
# for the version of the numpy wheel in WHEELHOUSE, unless it is there already. The images
# install it instead of PyPI's wheel, whose bundled OpenBLAS (28 MB) nothing of ipgeo uses
# (timezonefinder, shapely and the bulk engine do no linear algebra). Needs a C/C++ compiler
# and Python's headers; takes several minutes, once per numpy version.
set -euo pipefail
wheelhouse="$1"
py="${2:-python3}"
wheel="$(ls "$wheelhouse"/numpy-*.whl | sort -V | tail -n 1)"
version="$(basename "$wheel" | cut -d- -f2)"
# Kept outside the checkout as well, so that a fresh clone on the same machine reuses it.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ipgeo/numpy-noblas"
if ls "$wheelhouse/noblas/numpy-$version-"*.whl >/dev/null 2>&1; then
    exit 0
fi
if ls "$cache/numpy-$version-"*.whl >/dev/null 2>&1; then
    mkdir -p "$wheelhouse/noblas"
    cp "$cache/numpy-$version-"*.whl "$wheelhouse/noblas/"
    exit 0
fi
echo "numpy-noblas-wheel: building numpy $version without BLAS (once, several minutes)"
# No wheel cache: a cached numpy built with other options must not stand in for this one.
"$py" -m pip wheel -q --no-cache-dir --no-deps --no-binary numpy "numpy==$version" \
    -w "$wheelhouse/noblas" \
    -Csetup-args=-Dallow-noblas=true -Csetup-args=-Dblas=none -Csetup-args=-Dlapack=none 2>&1 \
    | grep -v -e '^WARNING: Location' || true
ls "$wheelhouse/noblas/numpy-$version-"*.whl >/dev/null
mkdir -p "$cache"
cp "$wheelhouse/noblas/numpy-$version-"*.whl "$cache/"
