//! The HTTP surface: one module per resource, each exposing `router()`; this file merges them and
//! adds the cross-cutting layers.

pub mod body;
pub mod connections;
pub mod detections;
pub mod detector;
pub mod devices;
pub mod edge;
pub mod encoding;
pub mod events;
pub mod export;
pub mod geojson;
pub mod geolocate;
pub mod geosubmit;
pub mod guard;
pub mod health;
pub mod imports;
pub mod notes;
pub mod ogc;
pub mod openapi;
pub mod origin;
pub mod params;
pub mod path;
pub mod query;
pub mod schema;
pub mod server;
pub mod stats;
pub mod tiles;
pub mod transmitters;
pub mod web;

use std::net::SocketAddr;
use std::time::Instant;

use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::{problem_response, ApiError};
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let server = &state.settings.server;
    let hsts = server.hsts || server.tls.cert_file.is_some();
    let cors = cors_layer(&server.cors_allowed_origins);
    let timeout = Duration::from_secs(server.request_timeout_secs);
    let limits = state.clone();
    let limits_for_log = state.clone();
    let router = Router::new()
        .merge(detections::router())
        .merge(health::router())
        .merge(stats::router())
        .merge(openapi::router())
        .merge(geosubmit::router())
        .merge(geolocate::router())
        .merge(devices::router())
        .merge(notes::router())
        .merge(events::router())
        .merge(transmitters::router())
        .merge(detector::router())
        .merge(tiles::router())
        .merge(ogc::router())
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            limits.clone(),
            guard::limit_clients,
        ))
        // Covers reading the body too, so an endless upload is cut off.
        .layer(middleware::from_fn_with_state(timeout, time_limit));
    // File imports stream for minutes: the same layers with their own, longer timeout.
    let import_timeout = Duration::from_secs(state.settings.ingest.import_timeout_secs);
    let imports = imports::router()
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(limits, guard::limit_clients))
        .layer(middleware::from_fn_with_state(import_timeout, time_limit));
    let mut router = router.merge(imports);
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    router = router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if hsts {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    router
        .layer(middleware::from_fn_with_state(limits_for_log, observe))
        // Keys never reach logs or traces, whatever logs headers later.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(sanitize_request_id))
}

/// A client's `x-request-id` is logged and echoed, so only a short plain token is kept; anything
/// else is replaced by a generated UUID.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = req.headers().get(&REQUEST_ID).is_none_or(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    if !acceptable {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

/// Bounds handling one request, body included, answering 408 as a problem.
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => problem_response(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            format!("the request took longer than {} s", limit.as_secs()),
        ),
    }
}

/// CORS for the listed origins only; none listed means same-origin (no CORS headers at all).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        detail: "no such endpoint".into(),
    }
}

async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not support that method".into(),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal server error",
        "an internal error occurred; it has been logged".into(),
    )
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The method as metrics and logs name it: one of the standard methods, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The request's span (request id, trace id, route, status), its metrics by route template
/// (never the raw path, to keep cardinality low) and one access-log event.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let started = Instant::now();
    // A fixed set: any token is a valid method, and a label taken from the request line let
    // one client grow /metrics without bound.
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Behind the edge proxy the peer is the proxy: log the client it vouches for, and the peer.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = guard::client_ip(peer, req.headers(), &state)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&HeaderExtractor(req.headers()));
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
        principal = tracing::field::Empty,
    );
    let incoming = parent.span().span_context().clone();
    // Harmless when tracing export is off (no OpenTelemetry layer to receive it).
    let _ = span.set_parent(parent);
    let trace_id = if incoming.is_valid() {
        incoming.trace_id().to_string()
    } else {
        let own = span.context().span().span_context().trace_id();
        if own != opentelemetry::trace::TraceId::INVALID {
            own.to_string()
        } else {
            format!("{:032x}", rand::random::<u128>())
        }
    };
    span.record("trace_id", trace_id.as_str());

    metrics::gauge!("shadowcheck_http_requests_in_flight").increment(1.0);
    let response = next.run(req).instrument(span.clone()).await;
    metrics::gauge!("shadowcheck_http_requests_in_flight").decrement(1.0);
    let status = response.status().as_u16();
    span.record("status", status);
    let elapsed = started.elapsed();
    tracing::info!(
        target: "shadowcheck::access",
        parent: &span,
        method = %method,
        route = %route,
        status,
        latency_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        client_addr = %client,
        peer_addr = %peer,
        "request"
    );
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("shadowcheck_http_requests_total", &labels).increment(1);
    metrics::histogram!("shadowcheck_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    response
}
