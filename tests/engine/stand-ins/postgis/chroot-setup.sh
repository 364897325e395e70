# As the official Dockerfile: the postgres user first (uid/gid 999), a UTF-8 locale, and
# postgresql-common told not to create a cluster before PostgreSQL itself is installed.
groupadd -r postgres --gid=999
useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres
install -d -o postgres -g postgres -m 1777 /var/lib/postgresql
apt-get install -y -qq --no-install-recommends locales >/dev/null
echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
locale-gen >/dev/null
apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf
