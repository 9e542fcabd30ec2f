#!/usr/bin/env bash
# Installs what ztp's demo, tests and benchmarks need on a fresh Debian machine (root).
# Daemons from these packages must never start in the root namespace: a policy-rc.d that exits 101
# stops the packages' maintainer scripts from starting them; anything already started is stopped.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi
STAMP=/var/lib/ztp-setup.stamp
PKGS=(iproute2 iputils-ping procps psmisc python3 python3-venv python3-dev gcc make
      isc-dhcp-client busybox isc-dhcp-relay dnsmasq-base kea-dhcp4-server kea-admin
      tftp-hpa tftpd-hpa atftp curl dnsutils tshark tcpdump nftables strace
      postgresql chromium chromium-driver bsdutils)
if [ "${1:-}" = "--docker" ]; then
  PKGS+=(docker.io debootstrap)
  STAMP=/var/lib/ztp-setup-docker.stamp
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PKGS[*]}" ]; then
  exit 0
fi
cleanup_policy() { [ -n "${MADE_POLICY:-}" ] && rm -f /usr/sbin/policy-rc.d; true; }
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  MADE_POLICY=1
fi
trap cleanup_policy EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PKGS[@]}"
# Belt and braces: if a package's own service was started anyway (a policy-rc.d of someone else's that
# allowed it), stop that service through its init script. Never stop processes by name: other people's
# servers run in their own namespaces on this host.
for d in isc-dhcp-relay dnsmasq kea-dhcp4-server tftpd-hpa postgresql; do
  if command -v service >/dev/null 2>&1; then service "$d" stop >/dev/null 2>&1 || true; fi
done
echo "${PKGS[*]}" > "$STAMP"
