mkdir -p /prometheus /etc/prometheus
chown -R nobody:nogroup /etc/prometheus /prometheus
ln -sf /usr/bin/busybox /usr/local/bin/wget
