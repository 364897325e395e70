# Debian names the binary prometheus-alertmanager; the image calls it /bin/alertmanager.
ln -sf prometheus-alertmanager /usr/bin/alertmanager
mkdir -p /alertmanager /etc/alertmanager
chown -R nobody:nogroup /etc/alertmanager /alertmanager
ln -sf /usr/bin/busybox /usr/local/bin/wget
