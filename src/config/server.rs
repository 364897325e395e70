//! `server.*`: the listeners, request and connection bounds, TLS.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{comma_list, invalid, is_http_url, ConfigError};

section! {
    pub struct ServerSettings {
        /// API listener.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 5000)),
        /// Prometheus metrics listener, kept apart so it is never exposed with the API.
        metrics_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9090)),
        /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
        drain_timeout_secs: u64 = 15,
        /// Largest accepted request body.
        body_limit_bytes: usize = 16 * 1024 * 1024,
        /// Bound on handling one request, body included (cuts off endless bodies); 408 after it.
        request_timeout_secs: u64 = 60,
        /// Bound on receiving a request's headers (cuts off slowloris clients), and on a new
        /// connection sending its first request (silent sockets, HTTP/2 with no stream).
        header_read_timeout_secs: u64 = 10,
        /// A connection with no request in flight for this long is closed (keep-alive included).
        idle_timeout_secs: u64 = 60,
        /// A connection whose reader takes no bytes for this long is closed, mid-response too
        /// (an export nobody reads no longer holds its turn).
        write_stall_timeout_secs: u64 = 60,
        /// Open connections at most (also bounded by the file descriptor limit); at the cap the
        /// longest-idle one is closed to make room, so probes always get in.
        max_connections: usize = 4096,
        /// Largest request head (request line + headers); 431 above.
        max_header_bytes: usize = 16 * 1024,
        /// Requests handled at once; beyond it new ones are shed with 503 instead of queueing.
        /// Health probes do not count against it.
        max_concurrent_requests: usize = 256,
        /// Slowest a request body may arrive, after `body_grace_secs`: a client trickling bytes
        /// cannot hold a slot (or an import) open. 408 below it.
        min_body_bytes_per_sec: u64 = 1024,
        body_grace_secs: u64 = 10,
        /// Bodies larger than `large_body_bytes` (declared, read or inflated) handled at once;
        /// more wait, so concurrent maximum-size bodies cannot multiply the process's memory.
        max_large_bodies: usize = 2,
        large_body_bytes: usize = 1024 * 1024,
        /// Proxies (CIDRs) whose X-Forwarded-For is believed for the client address.
        #[serde(deserialize_with = "comma_list")]
        trusted_proxies: Vec<String> = Vec::new(),
        /// Origins allowed to call the API from a browser (CORS); empty means same-origin only.
        #[serde(deserialize_with = "comma_list")]
        cors_allowed_origins: Vec<String> = Vec::new(),
        /// Send Strict-Transport-Security (set when a TLS-terminating proxy fronts the API;
        /// always sent when TLS is terminated in-process).
        hsts: bool = false,
        tls: TlsSettings = TlsSettings::default(),
        /// How many API processes serve this database (the compose `scale` profile sets it).
        /// Only checked: more than one cannot use the embedded database.
        api_replicas: u32 = 1,
    }
}

section! {
    pub struct TlsSettings {
        /// PEM certificate chain and private key; TLS is terminated in-process when both are
        /// set.
        cert_file: Option<PathBuf> = None,
        key_file: Option<PathBuf> = None,
    }
}

impl ServerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("server.request_timeout_secs", self.request_timeout_secs),
            (
                "server.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.idle_timeout_secs),
            (
                "server.write_stall_timeout_secs",
                self.write_stall_timeout_secs,
            ),
            ("server.max_connections", self.max_connections as u64),
            (
                "server.max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("server.max_large_bodies", self.max_large_bodies as u64),
            ("server.api_replicas", u64::from(self.api_replicas)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.body_limit_bytes < 1024 {
            return Err(invalid("server.body_limit_bytes", "must be at least 1024"));
        }
        if self.max_header_bytes < 8192 {
            return Err(invalid("server.max_header_bytes", "must be at least 8192"));
        }
        for cidr in &self.trusted_proxies {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "server.trusted_proxies",
                    format!("`{cidr}` is not an IP address or CIDR"),
                ));
            }
        }
        for origin in &self.cors_allowed_origins {
            if !is_http_url(origin) || origin.ends_with('/') {
                return Err(invalid(
                    "server.cors_allowed_origins",
                    format!("`{origin}` is not an origin like https://map.example.org"),
                ));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid(
                "server.tls.cert_file",
                "cert_file and key_file must be given together",
            ));
        }
        Ok(())
    }
}
