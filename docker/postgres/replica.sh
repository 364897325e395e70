#!/bin/sh
# The streaming replica of the compose `scale` profile. On first start (empty data directory) it
# clones the primary with pg_basebackup over a replication slot of its own and writes the standby
# settings (-R); every start then runs PostgreSQL as a hot standby that follows the primary.
# PRIMARY_HOST, PRIMARY_PORT, SECRETS_DIR and PGDATA may be overridden (the suite runs this very
# script against a loopback primary).
set -eu

secrets=${SECRETS_DIR:-/run/secrets}
primary=${PRIMARY_HOST:-postgis}
port=${PRIMARY_PORT:-5432}
slot=${REPLICA_SLOT:-replica_1}
: "${PGDATA:?PGDATA must name the data directory}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  echo "replica: cloning $primary:$port into $PGDATA (slot $slot)"
  # -C creates the slot, so the primary keeps the WAL this replica has not replayed yet;
  # a second clone of the same name reuses it.
  PGPASSWORD=$(cat "$secrets/db_replication_password") pg_basebackup \
    -h "$primary" -p "$port" -U shadowcheck_replicator -D "$PGDATA" \
    -X stream -R -S "$slot" -C -c fast --no-password \
    || PGPASSWORD=$(cat "$secrets/db_replication_password") pg_basebackup \
      -h "$primary" -p "$port" -U shadowcheck_replicator -D "$PGDATA" \
      -X stream -R -S "$slot" -c fast --no-password
fi
exec postgres -c hot_standby=on "$@"
