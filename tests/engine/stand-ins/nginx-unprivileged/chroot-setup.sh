# The image's nginx user, uid/gid 101, before the package could pick other numbers.
groupadd -r -g 101 nginx
useradd -r -u 101 -g nginx -d /var/cache/nginx -s /sbin/nologin nginx
