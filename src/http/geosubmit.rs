//! `POST /v2/geosubmit` (and `/v1/geosubmit`): the Mozilla Location Service submission API, so
//! unmodified stumbler apps can point at ShadowCheck. Answers as ichnaea did (200 `{}`) even when
//! some observations are invalid; those are counted in metrics and logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::domain::ValidationPolicy;
use crate::error::ApiError;
use crate::formats::geosubmit;
use crate::http::guard::{IngestQueryKeyScope, Require};
use crate::http::openapi::Problem;
use crate::ingest;

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
    let limit = state.settings.server.body_limit_bytes;
    let raw = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::PayloadTooLarge {
                    detail: format!("request body exceeds the limit of {limit} bytes"),
                }
            } else {
                ApiError::MalformedBody {
                    detail: format!("could not read the request body: {e}"),
                }
            }
        })?
        .to_bytes();
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || raw.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzipped {
        use std::io::Read;
        let mut out = Vec::new();
        // Bounded like the body itself, so a gzip bomb cannot exhaust memory.
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::MalformedBody {
                detail: format!("invalid gzip body: {e}"),
            })?;
        if out.len() > limit {
            return Err(ApiError::PayloadTooLarge {
                detail: format!("decompressed body exceeds the limit of {limit} bytes"),
            });
        }
        out
    } else {
        raw.to_vec()
    };
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody {
        detail: format!("invalid JSON: {e}"),
    })?;
    let principal = caller.0;
    let device_id =
        crate::formats::device_uuid(&format!("geosubmit:{}", principal.name)).to_string();
    let converted = geosubmit::convert(&body, &device_id, &principal.name, chrono::Utc::now())
        .map_err(|detail| ApiError::MalformedBody {
            detail: detail.to_owned(),
        })?;
    if converted.items.len() > state.settings.ingest.max_batch_items {
        return Err(ApiError::PayloadTooLarge {
            detail: format!(
                "{} observations in one request; the limit is {}",
                converted.items.len(),
                state.settings.ingest.max_batch_items
            ),
        });
    }
    let items: ingest::Items = converted.items.into_iter().map(Ok).collect();
    let policy = ValidationPolicy {
        now: chrono::Utc::now(),
        max_future_skew: chrono::Duration::seconds(state.settings.ingest.max_future_skew_secs),
    };
    let validated = ingest::validate(&items, &policy, &state.privacy);
    let (rejected, filtered) = (validated.rejected, validated.filtered);
    if !converted.skipped_reports.is_empty() || rejected > 0 {
        let first = validated
            .errors
            .first()
            .map(|e| format!("{}: {}", e.field, e.reason));
        tracing::warn!(skipped_reports = converted.skipped_reports.len(), rejected, first_error = ?first, "geosubmit observations rejected");
        metrics::counter!("shadowcheck_geosubmit_reports_skipped_total")
            .increment(converted.skipped_reports.len() as u64);
    }
    if !validated.valid.is_empty() {
        let offered = ingest::count_by_type(&validated.valid);
        let mut conn = state.acquire().await?;
        if let ingest::Stored::Fresh(_, by_type) =
            ingest::store(&mut conn, validated, None, |_| 200).await?
        {
            ingest::record_stored(&offered, &by_type);
        }
    }
    tracing::debug!(rejected, filtered, "geosubmit stored");
    // ichnaea's answer: an empty JSON object.
    Ok(Json(json!({})).into_response())
}
