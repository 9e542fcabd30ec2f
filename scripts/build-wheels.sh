#!/usr/bin/env bash
# Builds the wheels compose/Dockerfile installs (ztp and its dependencies) into compose/wheels/, on the
# host, so the image build needs no network: a ztp wheel from this checkout (its DHCP hot path compiled by
# mypyc, as `pip install .` builds it; ZTP_COMPILE=0 for a pure one: see setup.py), plus the dependencies'
# wheels for CPython 3.11 on this machine's architecture (the Python of both supported base images:
# python:3.11-slim-bookworm and the local ztp-base:bookworm), whatever Python the host itself runs.
#
# Environment: PYTHON (default .venv/bin/python, else python3), ZTP_WHEELS (default compose/wheels),
# ZTP_IMAGE_PYTHON (default 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${ZTP_WHEELS:-compose/wheels}
PYVER=${ZTP_IMAGE_PYTHON:-3.11}
ARCH=$(uname -m)

log() { echo "build-wheels.sh: $*" >&2; }

mkdir -p "$OUT"
HOSTVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$HOSTVER" != "$PYVER" ] && [ -z "${ZTP_COMPILE:-}" ]; then
  log "the host's Python is $HOSTVER, the image's $PYVER: building a pure ztp wheel (a compiled one would not load)"
  export ZTP_COMPILE=0
fi
# A stale ztp wheel of the same version would shadow today's sources: always rebuild it.
rm -f "$OUT"/ztp-*.whl
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# pip's build chatter (setuptools deprecation notices) only matters when the build fails.
# A fixed SOURCE_DATE_EPOCH makes the wheel byte-identical for identical sources: docker reuses its cache.
SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$OUT" . >"$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
ZTP_WHEEL=$(ls "$OUT"/ztp-*.whl)
# --platform/--python-version: the image's interpreter, not the host's, decides which binary wheels fit
# (linux_$ARCH: the compiled ztp wheel itself, built here for CPython 3.11 like the image's).
"$PYTHON" -m pip download -q --only-binary=:all: --implementation cp --python-version "$PYVER" \
  --platform "manylinux2014_$ARCH" --platform "manylinux_2_28_$ARCH" --platform "linux_$ARCH" --dest "$OUT" \
  "$ZTP_WHEEL" >"$LOG" 2>&1 \
  || { cat "$LOG" >&2; exit 1; }
log "$(ls "$OUT"/*.whl | wc -l) wheels in $OUT"
