# As the official Dockerfile: a sample configuration that listens on every address.
dpkg-divert --quiet --add --rename --divert /usr/share/postgresql/postgresql.conf.sample.dpkg /usr/share/postgresql/17/postgresql.conf.sample
cp /usr/share/postgresql/postgresql.conf.sample.dpkg /usr/share/postgresql/postgresql.conf.sample
ln -s ../postgresql.conf.sample /usr/share/postgresql/17/
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/postgresql.conf.sample
grep -qF "listen_addresses = '*'" /usr/share/postgresql/postgresql.conf.sample
mkdir -p /docker-entrypoint-initdb.d
