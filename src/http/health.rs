//! Probes. Liveness never touches the database; readiness does, bounded and cached.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::db::round_ms;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(get_live))
        .route("/api/v1/health/live", get(get_live))
        .route("/api/v1/health/ready", get(get_ready))
        .route("/api/v1/health/startup", get(get_startup))
        .route("/api/v1/health/detailed", get(get_detailed))
}

#[utoipa::path(get, path = "/api/v1/health/live", tag = "health", responses((status = 200, description = "Alive (never touches the database); also at /api/v1/health", body = Object),))]
pub(crate) async fn get_live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(get, path = "/api/v1/health/startup", tag = "health", responses((status = 200, description = "Start-up finished (503 before)", body = Object),
        (status = 503, description = "Not ready", body = Object),))]
pub(crate) async fn get_startup(State(state): State<AppState>) -> Response {
    if state.lifecycle.is_started() {
        (StatusCode::OK, Json(json!({"status": "started"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
            .into_response()
    }
}

#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health", responses((status = 200, description = "Ready: primary database reachable, migrations applied, not draining (503 otherwise); a read replica is reported but does not decide", body = Object),
        (status = 503, description = "Not ready", body = Object),))]
pub(crate) async fn get_ready(State(state): State<AppState>) -> Response {
    let database = state.database_health().await;
    let migrations = state.lifecycle.is_started();
    let draining = state.lifecycle.is_draining();
    let ready = database.is_ok() && migrations && !draining;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "database": match &database {
                Ok(latency) => json!({"status": "ok", "latency_ms": round_ms(*latency)}),
                Err(e) => json!({"status": "error", "error": e}),
            },
            "migrations": {"status": if migrations { "ok" } else { "pending" }},
            "draining": {"status": if draining { "draining" } else { "ok" }},
        }
    });
    // A replica out of use does not make this process unready: its reads go to the primary.
    let mut body = body;
    if let Some(replica) = state.replica() {
        body["checks"]["replica"] = json!(replica.status());
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Everything an operator wants at a glance; nothing secret (no URLs, no keys).
#[utoipa::path(get, path = "/api/v1/health/detailed", tag = "health", responses((status = 200, description = "Version, uptime, memory, database, pool, read replica and exporter state", body = Object),))]
pub(crate) async fn get_detailed(State(state): State<AppState>) -> Response {
    let database = state.database_health().await;
    let started = state.lifecycle.is_started();
    let draining = state.lifecycle.is_draining();
    // Reads still work without the replica, but an operator wants to know it is out of use.
    let replica_ok = state
        .replica()
        .is_none_or(|r| r.status().status == crate::db::replica::Condition::Ok);
    let healthy = database.is_ok() && started && !draining && replica_ok;
    Json(json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": crate::telemetry::VERSION,
        "commit": crate::telemetry::GIT_COMMIT,
        "uptime_seconds": state.lifecycle.uptime().as_secs(),
        "started": started,
        "draining": draining,
        "memory": {"resident_bytes": crate::telemetry::resident_memory_bytes()},
        "database": match &database {
            Ok(latency) => json!({"status": "ok", "latency_ms": round_ms(*latency)}),
            Err(e) => json!({"status": "error", "error": e}),
        },
        "pool": state.pool_stats(),
        "replica": state.replica().map(|r| r.report()),
        // With a multi-host URL: the host that takes the writes now (no credentials).
        "primary": state.failover.as_ref().map(|f| f.report()),
        "exporters": state.exporters.snapshot(),
    }))
    .into_response()
}
