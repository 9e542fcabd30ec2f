#!/usr/bin/env bash
# Builds the local docker base image ztp-base:bookworm without any registry: debootstrap a minimal
# Debian bookworm (python3, python3-venv, iproute2) from this machine's own apt mirror, then
# `docker import` it. The root filesystem tarball is cached in /var/cache/ztp/ so a re-import after
# `docker rmi` (or a fresh dockerd) takes seconds instead of a debootstrap.
#
# Environment: ZTP_BASE_IMAGE (default ztp-base:bookworm), ZTP_MIRROR (default: from apt sources),
# ZTP_CACHE_DIR (default /var/cache/ztp). Needs root and a running dockerd (scripts/start-dockerd.sh).
set -euo pipefail

IMAGE=${ZTP_BASE_IMAGE:-ztp-base:bookworm}
SUITE=bookworm
INCLUDE=python3,python3-venv,iproute2
CACHE_DIR=${ZTP_CACHE_DIR:-/var/cache/ztp}
# The package list is part of the name so changing INCLUDE cannot reuse a stale tarball.
TARBALL="$CACHE_DIR/rootfs-$SUITE-minbase-${INCLUDE//,/-}.tar"

log() { echo "build-base-image.sh: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "needs root (debootstrap and the cache in $CACHE_DIR): run with sudo"
  exit 1
fi

# The mirror apt already uses on this machine: URIs of the deb822 stanza whose Suites lists bookworm,
# else the first `deb` line for bookworm in sources.list.
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (uri != "" && hit) { print uri; found = 1; exit } uri = ""; hit = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (!found) flush() }
    ' "$f" | head -n 1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    # deb [options] URI suite components...
    awk -v suite="$SUITE" '
      $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }
    ' "$f"
  done
}

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null 2>&1 || { log "debootstrap not found: run scripts/setup-debian.sh --docker"; exit 1; }
  MIRROR=${ZTP_MIRROR:-$(find_mirror | head -n 1)}
  if [ -z "$MIRROR" ]; then
    log "no apt mirror for $SUITE found in /etc/apt/sources.list(.d); set ZTP_MIRROR"
    exit 1
  fi
  mkdir -p "$CACHE_DIR"
  ROOTFS=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS" "$TARBALL.part"' EXIT
  log "debootstrap $SUITE from $MIRROR (include: $INCLUDE)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $CACHE_DIR/debootstrap.log"; tail -n 20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
  # Downloaded .debs and apt lists only bloat the image.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" --numeric-owner -cf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
  rm -rf "$ROOTFS"
  trap - EXIT
fi

log "importing $TARBALL as $IMAGE"
docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$TARBALL" "$IMAGE" >/dev/null
docker image inspect "$IMAGE" --format '{{.Id}} {{.Size}}' >&2
