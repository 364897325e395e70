# As the unprivileged image: no `user` line, pid and temp paths in /tmp, a default site on 8080,
# logs to the container's stdout/stderr, configuration owned by uid 101.
rm -f /etc/nginx/sites-enabled/default
mkdir -p /etc/nginx/conf.d /var/cache/nginx /docker-entrypoint.d
cat > /etc/nginx/nginx.conf <<'CONF'
worker_processes  auto;
error_log  /var/log/nginx/error.log notice;
pid        /tmp/nginx.pid;
events {
    worker_connections  1024;
}
http {
    proxy_temp_path /tmp/proxy_temp;
    client_body_temp_path /tmp/client_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;
    access_log  /var/log/nginx/access.log;
    sendfile        on;
    keepalive_timeout  65;
    include /etc/nginx/conf.d/*.conf;
}
CONF
cat > /etc/nginx/conf.d/default.conf <<'CONF'
server {
    listen       8080;
    server_name  localhost;
    location / {
        root   /var/www/html;
        index  index.html index.nginx-debian.html;
    }
}
CONF
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log
chown -R 101:0 /var/cache/nginx /etc/nginx
chmod -R g+w /var/cache/nginx /etc/nginx
