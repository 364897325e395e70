//! Authentication and rate limits at the HTTP edge: the `Require<Scope>` extractor each handler
//! declares, the per-client limiter, and the client address behind trusted proxies.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{AuthError, AuthFailure, Principal, Scope, Slot};
use crate::error::ApiError;
use crate::state::AppState;

pub trait ScopeMarker: Send + Sync {
    const SCOPE: Scope;
    /// Whether `?key=` is accepted: only for clients that cannot send headers (stumbler apps).
    const QUERY_KEY: bool = false;
}

pub struct IngestScope;
pub struct ReadScope;
pub struct OperatorScope;
pub struct AdminScope;
/// Ingest for geosubmit clients, which put the key in the query string.
pub struct IngestQueryKeyScope;
/// Reads for geolocate clients (microG, NeoStumbler), which put the key in the query string.
pub struct ReadQueryKeyScope;

impl ScopeMarker for IngestScope {
    const SCOPE: Scope = Scope::Ingest;
}
impl ScopeMarker for ReadScope {
    const SCOPE: Scope = Scope::Read;
}
impl ScopeMarker for OperatorScope {
    const SCOPE: Scope = Scope::Operator;
}
impl ScopeMarker for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}
impl ScopeMarker for ReadQueryKeyScope {
    const SCOPE: Scope = Scope::Read;
    const QUERY_KEY: bool = true;
}
impl ScopeMarker for IngestQueryKeyScope {
    const SCOPE: Scope = Scope::Ingest;
    const QUERY_KEY: bool = true;
}

/// A caller allowed `S`'s scope, within its key's rate limit, holding one of its key's request
/// slots and one of its database permits for as long as the handler runs (body included).
pub struct Require<S: ScopeMarker>(
    pub Principal,
    PhantomData<S>,
    // Held, never read: dropping them with the handler frees the slot and the permit.
    #[allow(dead_code)] (Option<Slot>, Slot),
);

/// One of the caller's request slots (429 at once when its key has all of them in use), then
/// one of its database permits: a request holds at most one connection, so a key never holds
/// more than its share of the pool; beyond it, its own requests wait for each other (up to the
/// pool's acquire timeout, then 429), and other keys' requests do not wait at all.
async fn enter(state: &AppState, principal: &Principal) -> Result<(Option<Slot>, Slot), ApiError> {
    let too_many = |limit: &'static str| {
        metrics::counter!("shadowcheck_rate_limited_total", "limit" => limit).increment(1);
        ApiError::TooManyRequests {
            retry_after_secs: 1,
        }
    };
    let slot = state
        .auth
        .enter(principal)
        .ok_or_else(|| too_many("key_concurrency"))?;
    let wait = std::time::Duration::from_millis(state.settings.database.acquire_timeout_ms);
    let permit = state
        .auth
        .db_share(principal, wait)
        .await
        .ok_or_else(|| too_many("key_database_share"))?;
    Ok((slot, permit))
}

pub type RequireIngest = Require<IngestScope>;
pub type RequireRead = Require<ReadScope>;
pub type RequireOperator = Require<OperatorScope>;

fn presented_key(parts: &Parts, query_key: bool) -> Option<String> {
    let headers = &parts.headers;
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ').unwrap_or(("", ""));
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim().to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            if let Some(key) = basic_key(token.trim()) {
                return Some(key);
            }
        }
    }
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        if !v.trim().is_empty() {
            return Some(v.trim().to_owned());
        }
    }
    if query_key {
        let query = parts.uri.query().unwrap_or("");
        return form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty());
    }
    None
}

/// The key in `Authorization: Basic` credentials: the password, or the user name when the
/// password is empty. GIS clients (QGIS, GDAL's `GDAL_HTTP_USERPWD`, `curl -u`) can send a user
/// name and password where they cannot add a header.
fn basic_key(credentials: &str) -> Option<String> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let key = if password.is_empty() { user } else { password };
    (!key.is_empty()).then(|| key.to_owned())
}

fn refuse(failure: AuthFailure, parts: &Parts, state: &AppState) -> ApiError {
    metrics::counter!("shadowcheck_auth_failures_total", "reason" => failure.as_str()).increment(1);
    // Never the key itself.
    let client = client_ip(
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        &parts.headers,
        state,
    );
    tracing::warn!(reason = failure.as_str(), client = ?client, path = parts.uri.path(), "authentication refused");
    match failure {
        AuthFailure::Missing => ApiError::Unauthorized {
            detail: "an API key is required (Authorization: Bearer <key> or X-API-Key)".into(),
        },
        AuthFailure::Invalid => ApiError::Unauthorized {
            detail: "the API key is not valid".into(),
        },
        AuthFailure::Revoked => ApiError::Unauthorized {
            detail: "the API key has been revoked".into(),
        },
        AuthFailure::Scope => ApiError::Forbidden {
            detail: "the API key lacks the scope this endpoint needs".into(),
        },
    }
}

impl<S: ScopeMarker> FromRequestParts<AppState> for Require<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = &state.auth;
        let Some(key) = presented_key(parts, S::QUERY_KEY) else {
            if S::SCOPE == Scope::Read && auth.anonymous_read {
                let anonymous = Principal {
                    key_id: None,
                    name: "anonymous".into(),
                    scopes: vec![Scope::Read],
                };
                let permits = enter(state, &anonymous).await?;
                return Ok(Require(anonymous, PhantomData, permits));
            }
            return Err(refuse(AuthFailure::Missing, parts, state));
        };
        let pool = state.database()?;
        let principal = match auth.verify(pool, &key).await {
            Ok(p) => p,
            Err(AuthError::Failed(failure)) => return Err(refuse(failure, parts, state)),
            Err(AuthError::Database(e)) => return Err(e.into()),
        };
        if !principal.allows(S::SCOPE) {
            return Err(refuse(AuthFailure::Scope, parts, state));
        }
        if let Err(wait) = auth.check_rate(&principal) {
            metrics::counter!("shadowcheck_rate_limited_total", "limit" => "key").increment(1);
            return Err(ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs().max(1) as u32,
            });
        }
        let permits = enter(state, &principal).await?;
        tracing::Span::current().record("principal", principal.name.as_str());
        Ok(Require(principal, PhantomData, permits))
    }
}

/// Whether `ip` is one of `server.trusted_proxies`.
pub fn is_trusted_proxy(state: &AppState, ip: &IpAddr) -> bool {
    state.trusted_proxies.iter().any(|net| net.contains(ip))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address in X-Forwarded-For that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    state: &AppState,
) -> Option<IpAddr> {
    let peer = peer?.ip();
    let trusted = |ip: &IpAddr| is_trusted_proxy(state, ip);
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

/// Per-client-address token bucket, before authentication; probes are exempt.
pub async fn limit_clients(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limiter) = &state.client_limiter {
        let exempt = req.uri().path().starts_with("/api/v1/health");
        if !exempt {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            if let Some(ip) = client_ip(peer, req.headers(), &state) {
                if let Err(wait) = limiter.check(ip) {
                    metrics::counter!("shadowcheck_rate_limited_total", "limit" => "client")
                        .increment(1);
                    return ApiError::TooManyRequests {
                        retry_after_secs: wait.as_secs().max(1) as u32,
                    }
                    .into_response();
                }
            }
        }
    }
    next.run(req).await
}
