# The image's postgres user (Alpine's uid/gid 70), before the packages could pick other numbers.
groupadd -g 70 postgres
useradd -u 70 -g postgres -d /var/lib/postgresql -s /bin/sh postgres
