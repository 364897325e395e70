//! `POST /v2/geosubmit` (and `/v1/geosubmit`): the Mozilla Location Service submission API, so
//! unmodified stumbler apps can point at ShadowCheck. Answers as ichnaea did (200 `{}`) even when
//! some observations are invalid; those are counted in metrics and logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::error::ApiError;
use crate::formats::{self, geosubmit};
use crate::http::body;
use crate::http::guard::{IngestQueryKeyScope, Require};
use crate::http::schema::Problem;
use crate::ingest::{Source, Submission};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/geosubmit", post(post_geosubmit))
        .route("/v1/geosubmit", post(post_geosubmit))
}

#[utoipa::path(
    post,
    path = "/v2/geosubmit",
    tag = "imports",
    request_body(content = Object, description = "geosubmit v2: {\"items\": [{timestamp, position, wifiAccessPoints, cellTowers, bluetoothBeacons}]}, optionally gzip", content_type = "application/json"),
    params(("key" = Option<String>, Query, description = "API key, as stumbler apps send it")),
    responses(
        (status = 200, description = "Accepted (valid observations are committed)", body = Object),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn post_geosubmit(
    State(state): State<AppState>,
    caller: Require<IngestQueryKeyScope>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ingest = state.ingest()?;
    // The turn is held until the rows are stored: parsing and storing cost memory too.
    let (bytes, _turn) = body::read(
        body,
        &headers,
        state.settings.server.body_limit_bytes,
        body::Pace::new(&state.settings.server),
        &state.large_bodies,
    )
    .await?;
    let principal = caller.0;
    let capture = geosubmit::Capture {
        device_id: formats::device_uuid(&format!("geosubmit:{}", principal.name)).to_string(),
        device_name: principal.name.chars().take(128).collect(),
        now: chrono::Utc::now(),
    };
    let skipped = Arc::new(AtomicU64::new(0));
    let rows = geosubmit::rows(
        bytes,
        capture,
        state.settings.ingest.max_batch_items,
        Arc::clone(&skipped),
    )
    .map_err(|e| match e {
        geosubmit::BodyError::Malformed(detail) => ApiError::MalformedBody { detail },
        e @ geosubmit::BodyError::TooManyReports { .. } => ApiError::PayloadTooLarge {
            detail: e.to_string(),
        },
    })?;
    let receipt = ingest
        .submit(Submission {
            rows,
            source: Source::Geosubmit,
            idempotency: None,
            reporter: Some(principal.name.clone()),
        })
        .await?;
    let skipped = skipped.load(Ordering::Relaxed);
    if skipped > 0 {
        tracing::warn!(
            skipped_reports = skipped,
            "geosubmit reports without a usable position or time"
        );
        metrics::counter!("shadowcheck_geosubmit_reports_skipped_total").increment(skipped);
    }
    let report = receipt.report();
    tracing::debug!(
        accepted = report.accepted,
        rejected = report.rejected,
        filtered = report.filtered,
        "geosubmit stored"
    );
    // ichnaea's answer: an empty JSON object.
    Ok(Json(json!({})).into_response())
}
