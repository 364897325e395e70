#!/bin/sh
# Stand-in for edoburu/pgbouncer's /entrypoint.sh (same contract, our own script): DATABASE_URL or
# DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME; the auth file (AUTH_FILE, default
# /etc/pgbouncer/userlist.txt) is created when missing and given the user's entry; a pgbouncer.ini
# is generated when /etc/pgbouncer has none; then the command runs.
set -e
dir=/etc/pgbouncer
if [ -n "${DATABASE_URL:-}" ]; then
  rest=${DATABASE_URL#*://}
  userpass=${rest%@*}
  hostpart=${rest##*@}
  DB_USER=${userpass%%:*}
  case "$userpass" in *:*) DB_PASSWORD=${userpass#*:} ;; esac
  hostport=${hostpart%%/*}
  DB_HOST=${hostport%%:*}
  case "$hostport" in *:*) DB_PORT=${hostport#*:} ;; esac
  case "$hostpart" in */*) DB_NAME=${hostpart#*/} ;; esac
fi
auth_file=${AUTH_FILE:-$dir/userlist.txt}
# As the real image does (its workaround for a missing userlist): on a read-only root this fails.
[ -e "$auth_file" ] || touch "$auth_file"
if [ -n "${DB_USER:-}" ] && [ -n "${DB_PASSWORD:-}" ] && ! grep -q "^\"$DB_USER\"" "$auth_file"; then
  case "${AUTH_TYPE:-md5}" in
    plain | scram-sha-256) pass=$DB_PASSWORD ;;
    *) pass="md5$(printf '%s%s' "$DB_PASSWORD" "$DB_USER" | md5sum | cut -d' ' -f1)" ;;
  esac
  printf '"%s" "%s"\n' "$DB_USER" "$pass" >>"$dir/userlist.txt"
  echo "Wrote authentication credentials to $dir/userlist.txt"
fi
if [ ! -f "$dir/pgbouncer.ini" ]; then
  echo "Create pgbouncer config in $dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
${DB_NAME:-*} = host=${DB_HOST:?Setup pgbouncer config error! You must set DB_HOST env} port=${DB_PORT:-5432} auth_user=${DB_USER:-postgres}

[pgbouncer]
listen_addr = ${LISTEN_ADDR:-0.0.0.0}
listen_port = ${LISTEN_PORT:-5432}
unix_socket_dir = ${UNIX_SOCKET_DIR:-}
user = postgres
auth_file = $auth_file
auth_type = ${AUTH_TYPE:-md5}
${POOL_MODE:+pool_mode = $POOL_MODE}
ignore_startup_parameters = ${IGNORE_STARTUP_PARAMETERS:-extra_float_digits}
admin_users = ${ADMIN_USERS:-postgres}
INI
  echo "Starting $*..."
fi
exec "$@"
