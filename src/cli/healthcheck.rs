//! `shadowcheck healthcheck`: the container HEALTHCHECK (the image has no curl). Probes this
//! host's own API over HTTP, or over HTTPS when TLS is terminated in-process.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;

const READY_PATH: &str = "/api/v1/health/ready";

/// The readiness URL of the server these settings describe: its port, on loopback, and https
/// when it terminates TLS itself. Without settings (a broken configuration must not hide a
/// healthy server), the default listener.
pub fn default_url(settings: Option<&Settings>) -> String {
    let Some(settings) = settings else {
        return format!("http://127.0.0.1:5000{READY_PATH}");
    };
    let scheme = if settings.server.tls.cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let listen = settings.server.listen;
    let host = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        if listen.is_ipv6() {
            "[::1]".to_owned()
        } else {
            "127.0.0.1".to_owned()
        }
    } else {
        match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    format!("{scheme}://{host}:{}{READY_PATH}", listen.port())
}

/// Exit 0 when `url` answers 2xx within `timeout`, 1 otherwise (saying why on stderr).
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let outcome = if url.starts_with("https://") {
        https_status(url, timeout)
    } else {
        http_status(url, timeout)
    };
    match outcome {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("shadowcheck healthcheck: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("shadowcheck healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn http_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    client
        .get(url)
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// An HTTPS probe of this host's own server. The certificate is not verified: the probe sends
/// nothing secret and only asks "are you ready", and a self-signed or not-yet-trusted
/// certificate must not make a healthy server look dead. So only loopback hosts are probed.
fn https_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.to_owned();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err("HTTPS probes are for this host's own server (a loopback address)".into());
    }
    let port = parsed.port_or_known_default().ok_or("no port")?;
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(bare.to_owned()).map_err(|e| e.to_string())?;
    let mut tls =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

/// Accepts any certificate, still checking the handshake signatures with it (see `https_status`).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_follows_the_listener_with_its_scheme() {
        assert_eq!(
            default_url(None),
            "http://127.0.0.1:5000/api/v1/health/ready"
        );
        let mut s = Settings::default();
        s.server.listen = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(
            default_url(Some(&s)),
            "http://127.0.0.1:8080/api/v1/health/ready"
        );
        s.server.tls.cert_file = Some("/run/secrets/cert.pem".into());
        assert_eq!(
            default_url(Some(&s)),
            "https://127.0.0.1:8080/api/v1/health/ready"
        );
        s.server.listen = "[::]:5000".parse().expect("addr");
        assert_eq!(
            default_url(Some(&s)),
            "https://[::1]:5000/api/v1/health/ready"
        );
    }
}
