#!/usr/bin/env bash
# Fetches, on the host, the .debs compose/postgres/Dockerfile installs on the local base image, so the
# PostgreSQL image builds without any network: Debian's postgresql-15 and exactly the packages the base
# image lacks. Which ones is decided by apt inside the base image itself (a simulated install, reading
# the host's apt lists and sources read-only, with no network); the host's apt then downloads those
# versions into compose/postgres/debs/ (its ordinary client and mirror, as scripts/build-base-image.sh).
#
# Environment: ZTP_BASE_IMAGE (default ztp-base:bookworm), ZTP_PG_DEBS (default compose/postgres/debs).
# Needs a running dockerd and the base image (scripts/build-base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${ZTP_BASE_IMAGE:-ztp-base:bookworm}
OUT=${ZTP_PG_DEBS:-compose/postgres/debs}
PACKAGES=postgresql-15

log() { echo "build-postgres-debs.sh: $*" >&2; }

# "Inst NAME [OLD] (VERSION RELEASE [ARCH])": NAME=VERSION for every package the install would add.
WANT=$(docker run --rm --network none -v /var/lib/apt/lists:/var/lib/apt/lists:ro -v /etc/apt:/etc/apt:ro \
  "$IMAGE" apt-get install -s -y --no-install-recommends $PACKAGES 2>/dev/null \
  | awk '$1 == "Inst" { for (i = 3; i <= NF; i++) if ($i ~ /^\(/) { print $2 "=" substr($i, 2); break } }')
if [ -z "$WANT" ]; then
  log "apt in $IMAGE resolved nothing for $PACKAGES (host apt lists missing? run apt-get update)"
  exit 1
fi
mkdir -p "$OUT"
# Exactly this set: a stale .deb of another version would make dpkg -i install two versions' files.
rm -f "$OUT"/*.deb
# shellcheck disable=SC2086  # one argument per package
(cd "$OUT" && apt-get download $WANT >/dev/null 2>&1) || { log "apt-get download failed for: $WANT"; exit 1; }
log "$(ls "$OUT"/*.deb | wc -l) packages in $OUT"
