//! `/api/v1/detections`: ingest (POST), search as GeoJSON (GET) and one detection by id.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::db::detections::{self as store, DetectionRow};
use crate::domain::search::{Area, DetectionSearch};
use crate::domain::{BBox, Mac, Position, SignalType, ValidationPolicy};
use crate::error::{ApiError, ApiResult};
use crate::http::guard::{RequireIngest, RequireRead};
use crate::http::openapi::Problem;
use crate::ingest::{self, BodyFormat, Idempotency, IngestReport, Stored};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/detections",
            get(get_detections).post(post_detections),
        )
        .route("/api/v1/detections/{id}", get(get_detection))
}

const GEOJSON: &str = "application/geo+json";

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

/// Reads the body up to `limit` bytes, refusing early when Content-Length already says too much.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> ApiResult<bytes_buf::Bytes> {
    let too_large = || ApiError::PayloadTooLarge {
        detail: format!("request body exceeds the limit of {limit} bytes"),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::MalformedBody {
            detail: format!("could not read the request body: {e}"),
        }),
    }
}

mod bytes_buf {
    pub use axum::body::Bytes;
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

fn status_for(report: &IngestReport) -> u16 {
    if report.rejected == 0 && report.duplicates == 0 && report.filtered == 0 {
        201
    } else {
        200
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/detections",
    tag = "detections",
    request_body(content = Vec<super::openapi::DetectionInput>, description = "An array of detections (or one object, or {\"detections\": [...]}); application/x-ndjson also accepted", content_type = "application/json"),
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
    _caller: RequireIngest,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let format = body_format(&headers)?;
    let key = idempotency_key(&headers)?;
    state.database()?;
    let bytes = read_body(body, &headers, state.settings.server.body_limit_bytes).await?;
    let items = ingest::decode(&bytes, format, state.settings.ingest.max_batch_items)?;
    let policy = ValidationPolicy {
        now: Utc::now(),
        max_future_skew: chrono::Duration::seconds(state.settings.ingest.max_future_skew_secs),
    };
    let validated = ingest::validate(&items, &policy, &state.privacy);
    if validated.valid.is_empty() && validated.filtered == 0 {
        return Err(ApiError::Unprocessable {
            detail: format!("none of the {} detections is valid", items.len()),
            errors: validated.errors,
        });
    }
    let offered = ingest::count_by_type(&validated.valid);
    let idempotency = key.map(|k| Idempotency::new(k, &bytes));
    let mut conn = state.acquire().await?;
    match ingest::store(&mut conn, validated, idempotency.as_ref(), status_for).await? {
        Stored::Fresh(report, inserted_by_type) => {
            ingest::record_stored(&offered, &inserted_by_type);
            let status = StatusCode::from_u16(status_for(&report)).unwrap_or(StatusCode::OK);
            Ok((status, Json(report)).into_response())
        }
        Stored::Replayed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, Json(body)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

/// Query parameters of the search; each is parsed into a domain type or named in a 400.
const SEARCH_PARAMS: [&str; 16] = [
    "bbox",
    "lat",
    "lon",
    "radius_m",
    "nearest",
    "start",
    "end",
    "signal_type",
    "bssid",
    "bt_address",
    "ssid",
    "device_id",
    "is_suspicious",
    "min_signal_dbm",
    "limit",
    "after",
];

fn parse_search(
    raw: Option<&str>,
    default_limit: u32,
    max_limit: u32,
) -> ApiResult<DetectionSearch> {
    let mut params: HashMap<String, String> = HashMap::new();
    let mut signal_types = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !SEARCH_PARAMS.contains(&key.as_ref()) {
            return Err(ApiError::bad_parameter(&key, "unknown parameter"));
        }
        if key == "signal_type" {
            for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                let kind: SignalType = part
                    .parse()
                    .map_err(|e| ApiError::bad_parameter("signal_type", e))?;
                if !signal_types.contains(&kind) {
                    signal_types.push(kind);
                }
            }
            continue;
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(ApiError::bad_parameter(&key, "given more than once"));
        }
    }
    fn parsed<T: std::str::FromStr>(
        params: &HashMap<String, String>,
        name: &str,
        what: &str,
    ) -> ApiResult<Option<T>> {
        params
            .get(name)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| ApiError::bad_parameter(name, format!("must be {what}")))
            })
            .transpose()
    }
    let time = |name: &str| -> ApiResult<Option<DateTime<Utc>>> {
        params
            .get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| ApiError::bad_parameter(name, "must be an RFC 3339 timestamp"))
            })
            .transpose()
    };
    let mac = |name: &str| -> ApiResult<Option<Mac>> {
        params
            .get(name)
            .map(|v| {
                v.parse::<Mac>()
                    .map_err(|e| ApiError::bad_parameter(name, e))
            })
            .transpose()
    };

    let bbox: Option<BBox> = params
        .get("bbox")
        .map(|v| {
            v.parse::<BBox>()
                .map_err(|e| ApiError::bad_parameter("bbox", e))
        })
        .transpose()?;
    let lat: Option<f64> = parsed(&params, "lat", "a latitude in degrees")?;
    let lon: Option<f64> = parsed(&params, "lon", "a longitude in degrees")?;
    let radius_m: Option<f64> = parsed(&params, "radius_m", "a distance in metres")?;
    let nearest: Option<u32> = parsed(&params, "nearest", "a positive integer")?;

    let center = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(Position::new(lat, lon).map_err(|e| {
            let name = if matches!(e, crate::domain::geo::GeoError::Latitude) {
                "lat"
            } else {
                "lon"
            };
            ApiError::bad_parameter(name, e)
        })?),
        (Some(_), None) => return Err(ApiError::bad_parameter("lon", "required with lat")),
        (None, Some(_)) => return Err(ApiError::bad_parameter("lat", "required with lon")),
        (None, None) => None,
    };
    let needs_point =
        |name: &str| ApiError::bad_parameter(name, "requires lat and lon (and no bbox)");
    let area = match (bbox, center) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_parameter(
                "bbox",
                "cannot be combined with lat/lon",
            ))
        }
        (Some(b), None) => {
            if radius_m.is_some() {
                return Err(needs_point("radius_m"));
            }
            if nearest.is_some() {
                return Err(needs_point("nearest"));
            }
            Area::BBox(b)
        }
        (None, Some(center)) => match (radius_m, nearest) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_parameter(
                    "nearest",
                    "cannot be combined with radius_m",
                ))
            }
            (Some(r), None) => {
                if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) {
                    return Err(ApiError::bad_parameter(
                        "radius_m",
                        "must be greater than 0 and at most 1000000",
                    ));
                }
                Area::Radius {
                    center,
                    radius_m: r,
                }
            }
            (None, Some(n)) => {
                if n == 0 || n > max_limit {
                    return Err(ApiError::bad_parameter(
                        "nearest",
                        format!("must be between 1 and {max_limit}"),
                    ));
                }
                Area::Nearest { center, n }
            }
            (None, None) => {
                return Err(ApiError::bad_parameter(
                    "radius_m",
                    "lat/lon need radius_m or nearest",
                ))
            }
        },
        (None, None) => {
            if radius_m.is_some() {
                return Err(needs_point("radius_m"));
            }
            if nearest.is_some() {
                return Err(needs_point("nearest"));
            }
            Area::Anywhere
        }
    };

    let start = time("start")?;
    let end = time("end")?;
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            return Err(ApiError::bad_parameter("end", "must be after start"));
        }
    }
    let limit: u32 = parsed(&params, "limit", "a positive integer")?.unwrap_or(default_limit);
    if limit == 0 || limit > max_limit {
        return Err(ApiError::bad_parameter(
            "limit",
            format!("must be between 1 and {max_limit}"),
        ));
    }
    let after: Option<i64> = parsed(&params, "after", "a detection id")?;
    if after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_parameter("after", "must be a detection id"));
    }
    if after.is_some() && matches!(area, Area::Nearest { .. }) {
        return Err(ApiError::bad_parameter(
            "after",
            "nearest results are not paged",
        ));
    }
    let ssid = params.get("ssid").cloned();
    if ssid
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.len() > 32 || s.contains('\0'))
    {
        return Err(ApiError::bad_parameter("ssid", "must be 1 to 32 bytes"));
    }
    let min_signal_dbm: Option<i32> = parsed(&params, "min_signal_dbm", "an integer dBm value")?;
    if min_signal_dbm.is_some_and(|v| !(-200..=50).contains(&v)) {
        return Err(ApiError::bad_parameter(
            "min_signal_dbm",
            "must be between -200 and 50",
        ));
    }
    let is_suspicious = params
        .get("is_suspicious")
        .map(|v| match v.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::bad_parameter(
                "is_suspicious",
                "must be true or false",
            )),
        })
        .transpose()?;
    Ok(DetectionSearch {
        area,
        start,
        end,
        signal_types,
        bssid: mac("bssid")?,
        bt_address: mac("bt_address")?,
        ssid,
        device_id: parsed(&params, "device_id", "a UUID")?,
        is_suspicious,
        min_signal_dbm,
        limit,
        after,
    })
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    geometry: Value,
    properties: &'a DetectionRow,
}

fn feature(row: &DetectionRow) -> Feature<'_> {
    Feature {
        kind: "Feature",
        id: row.id,
        geometry: json!({"type": "Point", "coordinates": [row.longitude, row.latitude]}),
        properties: row,
    }
}

fn geojson(body: &impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GEOJSON));
    response
}

/// The same query with `after` moved to `last_id`.
fn next_href(raw: Option<&str>, last_id: i64) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "after" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("after", &last_id.to_string());
    format!("/api/v1/detections?{}", query.finish())
}

#[utoipa::path(
    get,
    path = "/api/v1/detections",
    tag = "detections",
    params(super::openapi::SearchParams),
    responses(
        (status = 200, description = "Matching detections, keyset-paged", body = super::openapi::FeatureCollection, content_type = "application/geo+json"),
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
    _caller: RequireRead,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let search = parse_search(raw.as_deref(), q.default_limit, q.max_limit)?;
    let mut conn = state.acquire().await?;
    let mut rows = store::search(&mut conn, &search).await?;
    let has_more = rows.len() > search.limit as usize;
    rows.truncate(search.limit as usize);
    let self_href = match raw.as_deref() {
        Some(r) if !r.is_empty() => format!("/api/v1/detections?{r}"),
        _ => "/api/v1/detections".to_owned(),
    };
    let mut links = vec![json!({"rel": "self", "href": self_href, "type": GEOJSON})];
    if let (true, Some(last)) = (has_more, rows.last()) {
        links.push(
            json!({"rel": "next", "href": next_href(raw.as_deref(), last.id), "type": GEOJSON}),
        );
    }
    let features: Vec<Feature<'_>> = rows.iter().map(feature).collect();
    Ok(geojson(&json!({
        "type": "FeatureCollection",
        "numberReturned": features.len(),
        "timeStamp": Utc::now(),
        "links": links,
        "features": features,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/detections/{id}",
    tag = "detections",
    params(("id" = i64, Path, description = "Detection id")),
    responses(
        (status = 200, description = "One detection", body = super::openapi::Feature, content_type = "application/geo+json"),
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
    let mut conn = state.acquire().await?;
    match store::get(&mut conn, id).await? {
        Some(row) => Ok(geojson(&feature(&row))),
        None => Err(ApiError::NotFound {
            detail: format!("no detection with id {id}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> ApiResult<DetectionSearch> {
        parse_search(Some(q), 1000, 10_000)
    }

    fn bad_param(q: &str) -> String {
        match parse(q) {
            Err(ApiError::BadRequest {
                parameter: Some(p), ..
            }) => p,
            other => panic!("{q}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn spatial_forms() {
        assert!(matches!(
            parse("bbox=1,2,3,4").map(|s| s.area),
            Ok(Area::BBox(_))
        ));
        assert!(matches!(
            parse("lat=1&lon=2&radius_m=100").map(|s| s.area),
            Ok(Area::Radius { .. })
        ));
        assert!(matches!(
            parse("lat=1&lon=2&nearest=5").map(|s| s.area),
            Ok(Area::Nearest { n: 5, .. })
        ));
        assert!(matches!(parse("").map(|s| s.area), Ok(Area::Anywhere)));
    }

    #[test]
    fn names_the_bad_parameter() {
        for (q, p) in [
            ("bbox=1,2", "bbox"),
            ("lat=95&lon=0&radius_m=1", "lat"),
            ("lat=1", "lon"),
            ("lat=1&lon=1", "radius_m"),
            ("radius_m=5", "radius_m"),
            ("lat=1&lon=1&radius_m=-1", "radius_m"),
            ("lat=1&lon=1&nearest=0", "nearest"),
            ("start=yesterday", "start"),
            ("start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("signal_type=lora", "signal_type"),
            ("bssid=xx", "bssid"),
            ("device_id=nope", "device_id"),
            ("is_suspicious=maybe", "is_suspicious"),
            ("foo=1", "foo"),
            ("limit=1&limit=2", "limit"),
            ("after=-1", "after"),
            ("min_signal_dbm=x", "min_signal_dbm"),
        ] {
            assert_eq!(bad_param(q), p, "{q}");
        }
    }

    #[test]
    fn next_link_replaces_after() {
        assert_eq!(
            next_href(Some("bbox=1,2,3,4&after=5"), 9),
            "/api/v1/detections?bbox=1%2C2%2C3%2C4&after=9"
        );
    }
}
