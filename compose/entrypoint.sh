#!/bin/sh
# Entrypoint of the ztp image: add the routes named in ZTP_ROUTES, then run `ztp ARGS...`.
#
# ZTP_ROUTES is a ';'-separated list of `ip route replace` arguments, e.g. "10.70.0.0/24 via 10.50.0.2":
# the appliance reaches a relayed subnet (relay giaddr, TFTP to the switches) through the relay, which
# docker cannot express. Needs CAP_NET_ADMIN when set.
#
# ZTP_DB_UPGRADE names a config file whose `state.dsn` is a shared PostgreSQL: `ztp db upgrade` runs on it
# first (safe from several appliances at once), retried for up to ZTP_DB_WAIT seconds (default 60) while
# the database container is still starting, since `ztp serve` refuses a missing schema.
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
if [ -n "${ZTP_DB_UPGRADE:-}" ]; then
  waited=0
  until ztp db upgrade --config "$ZTP_DB_UPGRADE" >&2; do
    waited=$((waited + 2))
    if [ "$waited" -gt "${ZTP_DB_WAIT:-60}" ]; then
      echo "entrypoint: ztp db upgrade failed for ${ZTP_DB_WAIT:-60}s: is the database up?" >&2
      exit 1
    fi
    sleep 2
  done
fi
exec ztp "$@"
