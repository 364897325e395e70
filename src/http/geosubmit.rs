//! `POST /v2/geosubmit` (and `/v1/geosubmit`): the Mozilla Location Service submission API, so
//! unmodified stumbler apps can point at ShadowCheck. Answers as ichnaea did (200 `{}`) even when
//! some observations are invalid; those are counted in metrics and logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::formats::{self, geosubmit};
use crate::http::body;
use crate::http::guard::{IngestQueryKeyScope, Require};
use crate::http::openapi::Problem;
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
    let bytes = body::read(
        body,
        &headers,
        state.settings.server.body_limit_bytes,
        body::Pace::new(&state.settings.server),
    )
    .await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody {
        detail: format!("invalid JSON: {e}"),
    })?;
    let principal = caller.0;
    let device_id = formats::device_uuid(&format!("geosubmit:{}", principal.name)).to_string();
    let converted = geosubmit::convert(&body, &device_id, &principal.name, chrono::Utc::now())
        .map_err(|detail| ApiError::MalformedBody { detail })?;
    if !converted.skipped_reports.is_empty() {
        tracing::warn!(
            skipped_reports = converted.skipped_reports.len(),
            "geosubmit reports without a usable position or time"
        );
        metrics::counter!("shadowcheck_geosubmit_reports_skipped_total")
            .increment(converted.skipped_reports.len() as u64);
    }
    let rows = converted
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (i as u64, Ok(item)))
        .collect();
    let receipt = ingest
        .submit(Submission {
            rows,
            source: Source::Geosubmit,
            idempotency: None,
        })
        .await?;
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
