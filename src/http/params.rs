//! Query strings, read the same way by every resource: only the parameters it knows, each at
//! most once (a 400 naming the first that is not), page sizes within bounds, and `next` links
//! that repeat the query with the cursor moved on.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// The query's parameters, refusing unknown and repeated ones.
pub fn read(raw: Option<&str>, allowed: &[&str]) -> ApiResult<HashMap<String, String>> {
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_parameter(&k, "unknown parameter"));
        }
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_parameter(&k, "given more than once"));
        }
    }
    Ok(params)
}

/// `limit`, 1 to `max`, or `default` when absent.
pub fn limit(params: &HashMap<String, String>, default: u32, max: u32) -> ApiResult<i64> {
    match params.get("limit") {
        None => Ok(i64::from(default)),
        Some(l) => match l.trim().parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(i64::from(n)),
            _ => Err(ApiError::bad_parameter(
                "limit",
                format!("must be 1 to {max}"),
            )),
        },
    }
}

/// The same query on `path` with `after` moved to `cursor`.
pub fn next_href(path: &str, raw: Option<&str>, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "after" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("after", cursor);
    format!("{path}?{}", query.finish())
}

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
