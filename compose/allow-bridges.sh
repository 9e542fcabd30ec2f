#!/bin/sh
# Lets traffic that stays on a docker bridge pass the host's FORWARD chain: `add` (default) or `remove`
# an `-i BR -o BR -j ACCEPT` rule per bridge in DOCKER-USER, the chain docker leaves to its users.
#
#   compose/allow-bridges.sh add ztp-mgmt ztp-access      (before `docker-compose ... up`; root)
#   compose/allow-bridges.sh remove ztp-mgmt ztp-access   (after `down`)
#
# Why: when br_netfilter is active (net.bridge.bridge-nf-call-iptables = 1), bridged frames pass
# iptables, and docker's rules for an `internal: true` network drop every packet whose destination is
# outside the network's subnet (moby/libnetwork#2260) - that includes DHCP's broadcasts to
# 255.255.255.255 and the switches' TFTP routed through the relay to 10.50.0.1. The rule only accepts
# traffic in and out of the same bridge: the networks still have no way out of the host.
set -eu
action=${1:-add}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- ztp-mgmt ztp-access
case $action in
  add|remove) ;;
  *) echo "usage: $0 [add|remove] [BRIDGE...]" >&2; exit 2 ;;
esac
if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" != 1 ]; then
  echo "allow-bridges.sh: br_netfilter is not filtering bridged traffic here; no rule needed" >&2
  exit 0
fi
for br in "$@"; do
  present=no
  iptables -C DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null && present=yes
  if [ "$action" = add ] && [ $present = no ]; then
    iptables -I DOCKER-USER -i "$br" -o "$br" -j ACCEPT
  elif [ "$action" = remove ] && [ $present = yes ]; then
    iptables -D DOCKER-USER -i "$br" -o "$br" -j ACCEPT
  fi
done
