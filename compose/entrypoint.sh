#!/bin/sh
# Entrypoint of the ztp image: add the routes named in ZTP_ROUTES, then run `ztp ARGS...`.
#
# ZTP_ROUTES is a ';'-separated list of `ip route replace` arguments, e.g. "10.70.0.0/24 via 10.50.0.2":
# the appliance reaches a relayed subnet (relay giaddr, TFTP to the switches) through the relay, which
# docker cannot express. Needs CAP_NET_ADMIN when set.
set -eu
if [ -n "${ZTP_ROUTES:-}" ]; then
  old_ifs=$IFS
  IFS=';'
  for route in $ZTP_ROUTES; do
    IFS=$old_ifs
    # shellcheck disable=SC2086  # word splitting makes the route's arguments
    ip route replace $route
    echo "entrypoint: route $route" >&2
    IFS=';'
  done
  IFS=$old_ifs
fi
exec ztp "$@"
