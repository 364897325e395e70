//! `/api/v1/detections`: ingest (POST), search as GeoJSON (GET) and one detection by id.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::db::detections::{self as store, DetectionRow};
use crate::domain::search::DetectionSearch;
use crate::error::{ApiError, ApiResult};
use crate::formats::export::ExportFormat;
use crate::formats::{self, json::BodyFormat};
use crate::http::guard::{RequireIngest, RequireRead};
use crate::http::params::{
    self, AreaParams, FormatParams, PageParams, PropertyParams, WindowParams,
};
use crate::http::query::{self, Query};
use crate::http::schema::Problem;
use crate::http::{body, geojson};
use crate::ingest::{Idempotency, Receipt, Source, Submission};
use crate::state::AppState;

const PATH: &str = "/api/v1/detections";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(get_detections).post(post_detections))
        .route("/api/v1/detections/{id}", get(get_detection))
}

fn body_format(headers: &HeaderMap) -> ApiResult<BodyFormat> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType {
            detail: "Content-Type is required: application/json or application/x-ndjson".into(),
        });
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(BodyFormat::NdJson)
        }
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(BodyFormat::Json),
        other => Err(ApiError::UnsupportedMediaType {
            detail: format!("Content-Type `{other}` is not accepted: use application/json or application/x-ndjson"),
        }),
    }
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("").trim().trim_matches('"');
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest {
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            parameter: Some("Idempotency-Key".into()),
        });
    }
    Ok(Some(key.to_owned()))
}

#[utoipa::path(
    post,
    path = "/api/v1/detections",
    tag = "detections",
    request_body(content = Vec<super::schema::DetectionInput>, description = "An array of detections (or one object, or {\"detections\": [...]}); application/x-ndjson also accepted", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer back")),
    responses(
        (status = 201, description = "Every detection stored (committed)", body = crate::ingest::IngestReport),
        (status = 200, description = "Some detections rejected or already stored; the valid ones are committed", body = crate::ingest::IngestReport),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks the ingest scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or batch too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No valid detection", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn post_detections(
    State(state): State<AppState>,
    caller: RequireIngest,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let format = body_format(&headers)?;
    let key = idempotency_key(&headers)?;
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
    let idempotency = key.map(|k| Idempotency::new(caller.0.caller_id(), k, &bytes));
    let rows = formats::json::decode(bytes, format, state.settings.ingest.max_batch_items)?;
    let receipt = ingest
        .submit(Submission {
            rows,
            source: Source::Api,
            idempotency,
            reporter: Some(caller.0.name.clone()),
        })
        .await?;
    let report = receipt.report();
    let status = if report.all_new() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(report)).into_response();
    if matches!(receipt, Receipt::Replayed(_)) {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Serialize)]
pub(crate) struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    geometry: Value,
    properties: &'a serde_json::Map<String, Value>,
}

pub(crate) fn feature(row: &DetectionRow) -> Feature<'_> {
    Feature {
        kind: "Feature",
        id: row.id,
        // Stored without a fix: a feature without geometry (RFC 7946 §3.2).
        geometry: match (row.longitude, row.latitude) {
            (Some(lon), Some(lat)) => json!({"type": "Point", "coordinates": [lon, lat]}),
            _ => Value::Null,
        },
        properties: &row.properties,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/detections",
    tag = "detections",
    params(AreaParams, WindowParams, PropertyParams, PageParams, FormatParams),
    responses(
        (status = 200, description = "Matching detections, keyset-paged; with `f` (or an Accept of an export type) every match as one streamed file", content(
            (super::schema::FeatureCollection = "application/geo+json"),
            (String = "application/geo+json-seq"),
            (String = "application/flatgeobuf"),
            (String = "text/csv; charset=utf-8"),
            (String = "application/vnd.google-earth.kml+xml"),
        )),
        (status = 400, description = "Invalid parameter (named in `parameter`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn get_detections(
    State(state): State<AppState>,
    caller: RequireRead,
    headers: HeaderMap,
    Query((area, window, properties, page, format)): Query<(
        AreaParams,
        WindowParams,
        PropertyParams,
        PageParams,
        FormatParams,
    )>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    // `f` (or an Accept naming an export type) asks for the whole result as one file,
    // streamed; otherwise a GeoJSON page.
    let export = match format.f {
        Some(name) => Some(ExportFormat::parse(&name).ok_or_else(|| {
            let names: Vec<&str> = ExportFormat::ALL.iter().map(|f| f.name()).collect();
            ApiError::bad_parameter("f", format!("must be one of {}", names.join(", ")))
        })?),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(ExportFormat::from_accept),
    };
    if let Some(format) = export {
        // An export has no page size: `limit` may cap it, `after` may start it; `nearest`
        // stays within the page maximum.
        let area = area.area(q.max_limit)?;
        let filters = params::filters(window.try_into()?, properties);
        let limit = query::page_size(page.limit, u32::MAX, u32::MAX)?;
        let search = DetectionSearch::new(area, filters, limit, page.after)?;
        return super::export::respond(&state, caller, format, search).await;
    }
    let search =
        params::detection_search(area, window, properties, page, q.default_limit, q.max_limit)?;
    let mut conn = state.read().await?;
    let mut rows = store::search(&mut conn, &search).await?;
    let has_more = rows.len() > search.limit() as usize;
    rows.truncate(search.limit() as usize);
    let next = rows
        .last()
        .filter(|_| has_more)
        .map(|last| geojson::next_href(PATH, raw.as_deref(), &last.id.to_string()));
    let features: Vec<Feature<'_>> = rows.iter().map(feature).collect();
    Ok(geojson::page(
        "",
        PATH,
        raw.as_deref(),
        &features,
        next,
        Vec::new(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/detections/{id}",
    tag = "detections",
    params(("id" = i64, Path, description = "Detection id")),
    responses(
        (status = 200, description = "One detection", body = super::schema::Feature, content_type = "application/geo+json"),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such detection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn get_detection(
    State(state): State<AppState>,
    _caller: RequireRead,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::BadRequest {
            detail: "detection id must be a non-negative integer".into(),
            parameter: Some("id".into()),
        })?;
    let mut conn = state.read().await?;
    match store::get(&mut conn, id).await? {
        Some(row) => Ok(geojson::response(&feature(&row))),
        None => Err(ApiError::NotFound {
            detail: format!("no detection with id {id}"),
        }),
    }
}
