# As the image: the configuration and userlist are examples only (the entrypoint writes them),
# the run and log directories exist, all owned by postgres; the binary also in /usr/bin.
mkdir -p /etc/pgbouncer /var/log/pgbouncer /var/run/pgbouncer
for f in pgbouncer.ini userlist.txt; do
  if [ -f "/etc/pgbouncer/$f" ]; then mv "/etc/pgbouncer/$f" "/etc/pgbouncer/$f.example"; fi
done
chown -R postgres /var/run/pgbouncer /etc/pgbouncer /var/log/pgbouncer
ln -sf /usr/sbin/pgbouncer /usr/bin/pgbouncer
