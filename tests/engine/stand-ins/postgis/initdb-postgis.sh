#!/bin/bash
# Stand-in for postgis/docker-postgis 17-3.5's /docker-entrypoint-initdb.d/10_postgis.sh: a
# template_postgis database and PostGIS (with topology, fuzzystrmatch and the tiger geocoder)
# in it and in POSTGRES_DB. Sourced by the entrypoint, so "${psql[@]}" is its SQL runner.
set -e
export PGUSER="$POSTGRES_USER"
"${psql[@]}" <<<'CREATE DATABASE template_postgis IS_TEMPLATE true;'
for db in template_postgis "$POSTGRES_DB"; do
  echo "Loading PostGIS extensions into $db"
  "${psql[@]}" --dbname="$db" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS postgis_topology;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS postgis_tiger_geocoder;
SQL
done
