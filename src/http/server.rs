//! The API's accept loop on hyper directly (axum::serve exposes no connection settings): header
//! read timeout against slowloris clients, a bound on the request head, optional TLS with rustls,
//! a global concurrency limit that sheds load with 503 (probes excepted), problem+json bodies
//! for the answers hyper writes itself, and a graceful drain with a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};

use crate::config::ServerSettings;
use crate::error::ApiError;
use crate::http::connections::{Connections, Guarded, Limits, Watched};
use crate::http::edge::EdgeProblems;

async fn overloaded(_: BoxError) -> Response {
    metrics::counter!("shadowcheck_http_load_shed_total").increment(1);
    ApiError::Overloaded {
        detail: "too many requests in progress; retry shortly".into(),
        retry_after_secs: 1,
    }
    .into_response()
}

/// Loads the certificate chain and key for in-process TLS, when configured (at build time, so a
/// missing file stops the process before it says it is listening).
pub fn tls_acceptor(
    settings: &ServerSettings,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_file), Some(key_file)) = (&settings.tls.cert_file, &settings.tls.key_file)
    else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("server.tls.cert_file {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("server.tls.cert_file {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("server.tls.key_file {}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Serves `router` until `shutdown`, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    settings: &ServerSettings,
    shutdown: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    // Probes are cheap and must answer while the server is full, or a busy server is
    // restarted by its orchestrator: they go around the concurrency limit.
    let probes = router.clone();
    let service = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(settings.max_concurrent_requests)
        .service(router);
    let header_timeout = Duration::from_secs(settings.header_read_timeout_secs);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        // A peer that vanished while a stream is open answers no ping: the connection goes.
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Connections::new(Limits::from_settings(settings)));
    let limits = connections.limits();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(conn) = connections.admit() else {
            // Every connection is busy with a request: this one is refused (dropped).
            continue;
        };
        let service = service.clone();
        let probes = probes.clone();
        let requests = Arc::clone(&conn);
        let hyper_service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let in_flight = requests.request();
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let req = req.map(axum::body::Body::new);
            let probe = req.uri().path().starts_with("/api/v1/health");
            let service = service.clone();
            let probes = probes.clone();
            async move {
                let response = if probe {
                    probes.oneshot(req).await
                } else {
                    service.oneshot(req).await
                };
                response.map(|r| r.map(|body| Guarded::new(body, in_flight)))
            }
        });
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let io = Watched::new(stream, Arc::clone(&conn));
            let served = async {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
                            Ok(Ok(tls_stream)) => {
                                let served = builder
                                    .serve_connection(
                                        TokioIo::new(EdgeProblems::new(tls_stream)),
                                        hyper_service,
                                    )
                                    .into_owned();
                                watcher.watch(served).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                    None => {
                        let served = builder
                            .serve_connection(TokioIo::new(EdgeProblems::new(io)), hyper_service)
                            .into_owned();
                        watcher.watch(served).await
                    }
                }
            };
            tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                reason = conn.watchdog(limits) => {
                    // Dropping the connection's future closes the socket.
                    metrics::counter!("shadowcheck_http_connections_closed_total", "reason" => reason.as_str()).increment(1);
                    tracing::debug!(%peer, reason = reason.as_str(), "connection closed by the server");
                }
            }
            connections.forget(&conn);
        });
    }
    // Stop accepting at once; in-flight requests finish, idle keep-alive connections close.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(drain) => Err(anyhow::anyhow!("in-flight requests did not finish within {} s", drain.as_secs())),
    }
}
