#!/bin/sh
# Entrypoint of the PostgreSQL image (compose/postgres/Dockerfile): create the cluster in PGDATA on first
# start, then run the server in the foreground as `postgres` (so `docker stop` shuts it down cleanly).
#
# ZTP_DB_NETWORK (required): the only network allowed to connect, with `trust` auth (no password): the
# compose networks are `internal: true`, and nothing outside this subnet gets past pg_hba.conf.
# ZTP_DB_NAME / ZTP_DB_USER (default ztp / ztp): the database, owned by that role (also the superuser).
set -eu
: "${ZTP_DB_NETWORK:?set ZTP_DB_NETWORK to the subnet allowed to connect, e.g. 10.50.0.0/24}"
DB=${ZTP_DB_NAME:-ztp}
USER_NAME=${ZTP_DB_USER:-ztp}
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
install -d -o postgres -g postgres -m 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # Local socket connections: trust; every other connection is refused by initdb's pg_hba.conf.
  su postgres -s /bin/sh -c "'$BIN/initdb' -D '$PGDATA' -U '$USER_NAME' --auth=trust -E UTF8 --locale=C.UTF-8" >&2
  cat >>"$PGDATA/pg_hba.conf" <<HBA
# compose: the internal network only (ZTP_DB_NETWORK)
host  all  all  $ZTP_DB_NETWORK  trust
HBA
  cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
CONF
  echo "CREATE DATABASE \"$DB\" OWNER \"$USER_NAME\";" \
    | su postgres -s /bin/sh -c "'$BIN/postgres' --single -D '$PGDATA' postgres" >/dev/null
  echo "ztp-postgres: cluster created in $PGDATA, database $DB, trust from $ZTP_DB_NETWORK" >&2
fi
exec su postgres -s /bin/sh -c "exec '$BIN/postgres' -D '$PGDATA'"
