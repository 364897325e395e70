//! Where the client reached this service, for absolute links in TileJSON and OGC documents.

/// Where the client reached this service (`scheme://host[:port]`), for absolute links in
/// TileJSON and OGC documents: the `Host` it used, and `https` when this server terminates TLS
/// or a trusted proxy says the client used it.
pub struct Origin(pub String);

impl axum::extract::FromRequestParts<crate::state::AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::ConnectInfo;
        use std::net::SocketAddr;
        let server = &state.settings.server;
        let peer_trusted = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|c| super::guard::is_trusted_proxy(state, &c.0.ip()));
        let forwarded_proto = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|_| peer_trusted);
        let scheme = if server.tls.cert_file.is_some() || forwarded_proto == Some("https") {
            "https"
        } else {
            "http"
        };
        let plausible = |h: &&str| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        };
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(plausible)
            .map_or_else(|| server.listen.to_string(), str::to_owned);
        Ok(Origin(format!("{scheme}://{host}")))
    }
}
