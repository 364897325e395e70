#!/usr/bin/env bash
# The compose stack's scheduled backups: runs scripts/backup (dump, verify with the server's own
# pg_restore, prune) every BACKUP_INTERVAL_SECS inside a container of the database's image, so
# pg_dump and pg_restore match the server. A failed run is retried after BACKUP_RETRY_SECS and
# never deletes a good dump. `--once` runs one backup and exits with its status (used by the tests).
#   env: PGHOST PGPORT PGUSER PGDATABASE, PGPASSWORD_FILE (the superuser's password secret),
#        BACKUP_DIR (default /var/lib/postgresql/backups), BACKUP_KEEP_DAYS (14),
#        BACKUP_INTERVAL_SECS (86400), BACKUP_RETRY_SECS (600), BACKUP_SCRIPT (scripts/backup)
set -uo pipefail

dir=${BACKUP_DIR:-/var/lib/postgresql/backups}
keep=${BACKUP_KEEP_DAYS:-14}
interval=${BACKUP_INTERVAL_SECS:-86400}
retry=${BACKUP_RETRY_SECS:-600}
script=${BACKUP_SCRIPT:-/usr/local/bin/shadowcheck-backup}
if [ -n "${PGPASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(cat "$PGPASSWORD_FILE") || { echo "backup-loop: cannot read $PGPASSWORD_FILE" >&2; exit 2; }
  export PGPASSWORD
fi
# libpq takes host, user and database from PG* variables; the URL only names the database.
export DATABASE_URL="postgresql:///${PGDATABASE:-shadowcheck}"

once() { "$script" --dir "$dir" --keep-days "$keep"; }

if [ "${1:-}" = "--once" ]; then
  once
  exit $?
fi

# SIGTERM from `docker compose stop` ends the wait at once instead of after the grace period.
trap 'exit 0' TERM INT
while true; do
  if once; then
    wait_for=$interval
  else
    echo "backup-loop: backup failed; retrying in ${retry}s" >&2
    wait_for=$retry
  fi
  sleep "$wait_for" &
  wait $!
done
