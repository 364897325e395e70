//! `/api/v1/transmitters`: the transmitter registry as GeoJSON (each transmitter at its
//! estimated position), searchable and keyset-paged, and one transmitter with its track.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::db::registry::{self as store, Cursor, Sort, TransmitterRow, TransmitterSearch};
use crate::domain::following::Level;
use crate::domain::registry::TransmitterKey;
use crate::domain::rogue;
use crate::domain::tracker::TrackerClass;
use crate::domain::{BBox, SignalType};
use crate::error::{ApiError, ApiResult};
use crate::http::guard::RequireRead;
use crate::http::openapi::Problem;
use crate::http::{geojson, params};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/transmitters", get(list))
        .route("/api/v1/transmitters/{radio}/{identifier}", get(one))
}

const PARAMS: &[&str] = &[
    "radio",
    "bbox",
    "start",
    "end",
    "name",
    "vendor",
    "device_id",
    "tracker",
    "level",
    "min_score",
    "flag",
    "sort",
    "limit",
    "after",
];
/// Sightings returned with one transmitter (the most recent, oldest first).
const TRACK_LIMIT: i64 = 5_000;

pub(crate) fn feature(row: &TransmitterRow, extra: Option<(&str, Value)>) -> Value {
    let geometry = match (row.longitude, row.latitude) {
        (Some(lon), Some(lat)) => json!({"type": "Point", "coordinates": [lon, lat]}),
        _ => Value::Null,
    };
    let mut properties = serde_json::to_value(row).unwrap_or_else(|_| json!({}));
    if let (Some((name, value)), Some(map)) = (extra, properties.as_object_mut()) {
        map.insert(name.to_owned(), value);
    }
    json!({
        "type": "Feature",
        "id": format!("{}/{}", row.radio, row.identifier),
        "geometry": geometry,
        "properties": properties,
    })
}

pub(crate) fn cursor_of(row: &TransmitterRow) -> String {
    format!(
        "{},{},{},{},{}",
        row.last_seen.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.detections,
        row.surveillance_score.unwrap_or(0.0),
        row.radio,
        row.identifier
    )
}

/// Reads the query parameters into a search, naming the first one that cannot be used.
pub(crate) fn parse_search(
    raw: Option<&str>,
    default_limit: u32,
    max_limit: u32,
) -> ApiResult<TransmitterSearch> {
    let params = params::read(raw, PARAMS)?;
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
    let mut search = TransmitterSearch {
        start: time("start")?,
        end: time("end")?,
        ..TransmitterSearch::default()
    };
    if let Some(radios) = params.get("radio") {
        for part in radios.split(',').filter(|p| !p.trim().is_empty()) {
            let radio: SignalType = part
                .trim()
                .parse()
                .map_err(|e| ApiError::bad_parameter("radio", e))?;
            if !search.radios.contains(&radio) {
                search.radios.push(radio);
            }
        }
    }
    if let Some(b) = params.get("bbox") {
        let b: BBox = b.parse().map_err(|e| ApiError::bad_parameter("bbox", e))?;
        search.bbox = Some([b.min_lon, b.min_lat, b.max_lon, b.max_lat]);
    }
    // NUL and other control characters cannot reach PostgreSQL text: refused here.
    let text = |name: &str| -> ApiResult<Option<String>> {
        let Some(value) = params.get(name).map(|v| v.trim()) else {
            return Ok(None);
        };
        if value.is_empty() || value.chars().count() > 64 || value.chars().any(char::is_control) {
            return Err(ApiError::bad_parameter(
                name,
                "must be 1 to 64 printable characters",
            ));
        }
        Ok(Some(value.to_owned()))
    };
    search.name = text("name")?;
    search.vendor = text("vendor")?;
    if let Some(d) = params.get("device_id") {
        search.device_id = Some(
            d.trim()
                .parse()
                .map_err(|_| ApiError::bad_parameter("device_id", "must be a UUID"))?,
        );
    }
    if let Some(t) = params.get("tracker") {
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "any" {
                search.trackers.extend(
                    TrackerClass::ALL
                        .iter()
                        .filter(|c| c.is_tracker())
                        .map(|c| c.as_str().to_owned()),
                );
                continue;
            }
            let class = TrackerClass::parse(part).ok_or_else(|| {
                let names: Vec<&str> = TrackerClass::ALL.iter().map(|c| c.as_str()).collect();
                ApiError::bad_parameter(
                    "tracker",
                    format!("must be `any` or among {}", names.join(", ")),
                )
            })?;
            search.trackers.push(class.as_str().to_owned());
        }
    }
    if let Some(l) = params.get("level") {
        let level = Level::parse(l.trim()).ok_or_else(|| {
            ApiError::bad_parameter("level", "must be none, watch, suspicious or alert")
        })?;
        search.levels = Level::ALL
            .into_iter()
            .filter(|x| *x >= level)
            .map(Level::as_str)
            .collect();
    }
    if let Some(m) = params.get("min_score") {
        search.min_score = Some(
            m.trim()
                .parse::<f32>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(|| ApiError::bad_parameter("min_score", "must be 0 to 100"))?,
        );
    }
    if let Some(f) = params.get("flag") {
        let f = f.trim();
        if !rogue::ALL_FLAGS.contains(&f) {
            return Err(ApiError::bad_parameter(
                "flag",
                format!("must be one of {}", rogue::ALL_FLAGS.join(", ")),
            ));
        }
        search.flag = Some(f.to_owned());
    }
    search.sort = match params.get("sort").map(|s| s.trim()) {
        None | Some("last_seen") => Some(Sort::LastSeen),
        Some("detections") => Some(Sort::Detections),
        Some("score") => Some(Sort::Score),
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "sort",
                "must be last_seen, detections or score",
            ))
        }
    };
    search.limit = params::limit(&params, default_limit, max_limit)?;
    if let Some(after) = params.get("after") {
        let invalid = || ApiError::bad_parameter("after", "must be the cursor of a `next` link");
        let parts: Vec<&str> = after.splitn(5, ',').collect();
        let [seen, count, score, radio, identifier] = parts.as_slice() else {
            return Err(invalid());
        };
        search.after = Some(Cursor {
            last_seen: DateTime::parse_from_rfc3339(seen)
                .map_err(|_| invalid())?
                .with_timezone(&Utc),
            detections: count.parse().map_err(|_| invalid())?,
            score: score.parse().map_err(|_| invalid())?,
            key: TransmitterKey::parse(radio, identifier).map_err(|_| invalid())?,
        });
    }
    Ok(search)
}

#[utoipa::path(
    get,
    path = "/api/v1/transmitters",
    tag = "transmitters",
    params(super::openapi::TransmitterParams),
    responses(
        (status = 200, description = "Registry rows at their estimated positions, keyset-paged", body = super::openapi::FeatureCollection, content_type = "application/geo+json"),
        (status = 400, description = "Invalid parameter (named in `parameter`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// `GET /api/v1/transmitters`: filters `radio` (comma list), `bbox` (of the estimated
/// position), `start`/`end` (seen within), `name` (substring of a name or SSID), `vendor`
/// (substring), `device_id`
/// (seen by that capture device); `sort` = `last_seen` (default) or `detections`, newest or
/// most seen first; `limit`; `after` from the `next` link.
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: RequireRead,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let search = parse_search(raw.as_deref(), q.default_limit, q.max_limit)?;
    let mut conn = state.read().await?;
    let mut rows = store::search(&mut conn, &search).await?;
    let has_more = rows.len() as i64 > search.limit;
    rows.truncate(search.limit as usize);
    let next = rows.last().filter(|_| has_more).map(cursor_of);
    let features: Vec<Value> = rows.iter().map(|r| feature(r, None)).collect();
    Ok(geojson::page(
        "",
        "/api/v1/transmitters",
        raw.as_deref(),
        &features,
        next,
        Vec::new(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/transmitters/{radio}/{identifier}",
    tag = "transmitters",
    params(
        ("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "A MAC address in any common notation, or mcc-mnc-lac-cell_id for a cell (lac may be empty)"),
    ),
    responses(
        (status = 200, description = "The registry row with its track", body = super::openapi::Feature, content_type = "application/geo+json"),
        (status = 400, description = "Not a transmitter identifier", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the registry", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// `GET /api/v1/transmitters/{radio}/{identifier}`: the registry row as a Feature at the
/// estimated position, with its most recent sightings as a time-ordered `track`.
pub(crate) async fn one(
    State(state): State<AppState>,
    _caller: RequireRead,
    Path((radio, identifier)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key = TransmitterKey::parse(&radio, &identifier).map_err(|why| ApiError::BadRequest {
        detail: why,
        parameter: Some("identifier".into()),
    })?;
    let mut conn = state.read().await?;
    let Some(row) = store::get(&mut conn, &key).await? else {
        return Err(ApiError::NotFound {
            detail: format!(
                "no {} transmitter {} in the registry (new detections are registered within seconds)",
                key.radio, key.identifier
            ),
        });
    };
    let track = store::track(&mut conn, &key, TRACK_LIMIT).await?;
    let scores = crate::db::following::scores_of(&mut conn, &key).await?;
    let mut f = feature(
        &row,
        Some((
            "track",
            serde_json::to_value(&track).unwrap_or_else(|_| json!([])),
        )),
    );
    f["properties"]["scores"] = serde_json::to_value(&scores).unwrap_or_else(|_| json!([]));
    Ok(geojson::response(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_parameters_are_checked_and_cursors_round_trip() {
        let s = parse_search(
            Some("radio=wifi,ble&sort=detections&limit=5&name=net"),
            100,
            1000,
        )
        .expect("parses");
        assert_eq!(s.radios, vec![SignalType::Wifi, SignalType::Ble]);
        assert_eq!(s.limit, 5);
        for bad in [
            "name=a%00b",
            "vendor=",
            "radio=tv",
            "sort=name",
            "limit=0",
            "after=x",
            "colour=red",
            "limit=1&limit=2",
            "tracker=airtag",
            "level=red",
            "min_score=101",
            "flag=odd",
        ] {
            assert!(parse_search(Some(bad), 100, 1000).is_err(), "{bad}");
        }
        let s = parse_search(
            Some("after=2026-11-30T07:58:12.123456Z,42,0,cellular,262-1--10001"),
            100,
            1000,
        )
        .expect("cursor");
        let after = s.after.expect("after");
        assert_eq!(after.detections, 42);
        assert_eq!(after.key.identifier, "262-1--10001");
    }
}
