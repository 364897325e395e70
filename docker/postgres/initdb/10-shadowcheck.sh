#!/bin/sh
# Runs once, as the superuser, when the database volume is first initialised (postgres image
# entrypoint). Creates the extensions (superuser-only for PostGIS) and two roles (three with the
# replica's):
#   shadowcheck_owner: owns the schema; used only by the one-shot `migrate` service.
#   shadowcheck_app:   the API; may read and write rows, may not create, alter or drop anything.
# Passwords come from Docker secrets, never from the environment.
set -eu

# SECRETS_DIR and SHADOWCHECK_DB exist so the test suite can run this very script.
secrets=${SECRETS_DIR:-/run/secrets}
db=${SHADOWCHECK_DB:-shadowcheck}
owner_password=$(cat "$secrets/db_owner_password")
app_password=$(cat "$secrets/db_app_password")

# Each object only when missing, so the script can run again (the suite runs it on a cluster
# that may already have the roles); in the container it runs once, on an empty volume.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$owner_password" -v app_password="$app_password" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE shadowcheck_owner LOGIN PASSWORD %L', :'owner_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_owner') \gexec
SELECT format('CREATE ROLE shadowcheck_app LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE', :'app_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') \gexec
-- The owner owns the database, so it owns `public` (PostgreSQL 15+) for the migration ledger.
SELECT format('CREATE DATABASE %I OWNER shadowcheck_owner', :'db')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL

# The streaming replica's role (compose `scale` profile), when its secret exists: replication
# only, from the backend network, no access to any database's rows by login.
if [ -s "$secrets/db_replication_password" ]; then
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v replication_password="$(cat "$secrets/db_replication_password")" <<'SQL'
SELECT format('CREATE ROLE shadowcheck_replicator LOGIN REPLICATION PASSWORD %L', :'replication_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_replicator') \gexec
SQL
  line="host replication shadowcheck_replicator all scram-sha-256"
  grep -qxF "$line" "$PGDATA/pg_hba.conf" || echo "$line" >> "$PGDATA/pg_hba.conf"
fi

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$db" -v db="$db" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO shadowcheck_owner, shadowcheck_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO shadowcheck_app;
-- Everything the owner creates later (schema sigint, tables, monthly partitions made by
-- sigint.ensure_partition) is usable, not alterable, by the app role.
ALTER DEFAULT PRIVILEGES FOR ROLE shadowcheck_owner GRANT USAGE ON SCHEMAS TO shadowcheck_app;
ALTER DEFAULT PRIVILEGES FOR ROLE shadowcheck_owner GRANT SELECT, INSERT, UPDATE ON TABLES TO shadowcheck_app;
ALTER DEFAULT PRIVILEGES FOR ROLE shadowcheck_owner GRANT USAGE, SELECT ON SEQUENCES TO shadowcheck_app;
ALTER DEFAULT PRIVILEGES FOR ROLE shadowcheck_owner GRANT EXECUTE ON FUNCTIONS TO shadowcheck_app;
SQL
