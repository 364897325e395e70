//! `/api/v1/transmitters`: the transmitter registry as GeoJSON (each transmitter at its
//! estimated position), searchable and keyset-paged, and one transmitter with its track.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::db::registry::{self as store, TransmitterRow};
use crate::domain::following::Level;
use crate::domain::registry::TransmitterKey;
use crate::domain::rogue::RogueFlag;
use crate::domain::search::{
    Score, SignalTypes, Sort, TextPattern, Timestamp, Trackers, TransmitterCursor,
    TransmitterSearch,
};
use crate::domain::{BBox, Bounds, SignalType};
use crate::error::{ApiError, ApiResult};
use crate::http::geojson;
use crate::http::guard::RequireRead;
use crate::http::path::TransmitterPath;
use crate::http::query::{self, Query, QueryPart};
use crate::http::schema::Problem;
use crate::state::AppState;

const PATH: &str = "/api/v1/transmitters";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list))
        .route("/api/v1/transmitters/{radio}/{identifier}", get(one))
}

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
    let Ok(radio) = row.radio.parse::<SignalType>() else {
        return String::new();
    };
    TransmitterCursor {
        last_seen: row.last_seen,
        detections: row.detections,
        score: row.surveillance_score.unwrap_or(0.0),
        key: TransmitterKey {
            radio,
            identifier: row.identifier.clone(),
        },
    }
    .to_string()
}

/// What a transmitter is: the filters the REST list and the OGC collection share.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransmitterPropertyParams {
    /// One or a comma list (or repeats) of wifi, bluetooth, ble, cellular.
    #[param(value_type = Option<String>, example = "ble")]
    pub radio: Option<SignalTypes>,
    /// Case-insensitive substring of a name or SSID it used (1 to 64 printable characters).
    #[param(value_type = Option<String>)]
    pub name: Option<TextPattern>,
    /// Case-insensitive substring of the IEEE-registered vendor.
    #[param(value_type = Option<String>)]
    pub vendor: Option<TextPattern>,
    /// Seen by this capture device.
    pub device_id: Option<Uuid>,
    /// Tracker class, a comma list of apple_find_my, tile, chipolo, samsung_smarttag,
    /// google_find_my, pebblebee, apple_device; or `any` for every item tracker.
    #[param(value_type = Option<String>)]
    pub tracker: Option<Trackers>,
    /// At or above this following level: none, watch, suspicious, alert.
    #[param(value_type = Option<String>)]
    pub level: Option<Level>,
    /// Highest following score at least this (0 to 100).
    #[param(value_type = Option<f32>, minimum = 0, maximum = 100)]
    pub min_score: Option<Score>,
    /// Carrying this rogue flag: attack_tool_prefix, mobile_ap, cell_too_far, evil_twin,
    /// cell_area_change.
    #[param(value_type = Option<String>)]
    pub flag: Option<RogueFlag>,
}

impl QueryPart for TransmitterPropertyParams {
    const LISTS: &'static [&'static str] = &["radio", "tracker"];
}

impl From<TransmitterPropertyParams> for TransmitterSearch {
    fn from(p: TransmitterPropertyParams) -> Self {
        Self {
            radios: p.radio.map(|r| r.0).unwrap_or_default(),
            name: p.name,
            vendor: p.vendor,
            device_id: p.device_id,
            trackers: p.tracker.map(|t| t.0).unwrap_or_default(),
            min_level: p.level,
            min_score: p.min_score,
            flag: p.flag,
            ..Self::default()
        }
    }
}

/// Where, when, in which order, and the page: the REST list's own parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransmitterListParams {
    /// minLon,minLat,maxLon,maxLat of the estimated position.
    #[param(value_type = Option<String>, example = "13.3,52.4,13.5,52.6")]
    pub bbox: Option<BBox>,
    /// RFC 3339: last seen at or after.
    #[param(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    /// RFC 3339: first seen at or before.
    #[param(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
    /// `last_seen` (default), `detections` or `score` (scored transmitters only), descending.
    #[param(value_type = Option<String>)]
    pub sort: Option<Sort>,
    /// 1..=query.max_limit (default query.default_limit).
    pub limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    #[param(value_type = Option<String>)]
    pub after: Option<TransmitterCursor>,
}

impl QueryPart for TransmitterListParams {}

impl TransmitterListParams {
    /// The REST list's search: these and the properties, `limit` within `1..=max_limit`.
    fn search(
        self,
        properties: TransmitterPropertyParams,
        default_limit: u32,
        max_limit: u32,
    ) -> ApiResult<TransmitterSearch> {
        Ok(TransmitterSearch {
            bbox: self.bbox.map(Bounds::One),
            seen_from: self.start.map(|t| t.0),
            seen_until: self.end.map(|t| t.0),
            sort: self.sort.unwrap_or_default(),
            limit: query::page_size(self.limit, default_limit, max_limit)?,
            after: self.after,
            ..properties.into()
        })
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/transmitters",
    tag = "transmitters",
    params(TransmitterPropertyParams, TransmitterListParams),
    responses(
        (status = 200, description = "Registry rows at their estimated positions, keyset-paged", body = super::schema::FeatureCollection, content_type = "application/geo+json"),
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
    Query((properties, list)): Query<(TransmitterPropertyParams, TransmitterListParams)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let search = list.search(properties, q.default_limit, q.max_limit)?;
    let mut conn = state.read().await?;
    let mut rows = store::search(&mut conn, &search).await?;
    let has_more = rows.len() > search.limit as usize;
    rows.truncate(search.limit as usize);
    let next = rows
        .last()
        .filter(|_| has_more)
        .map(|last| geojson::next_href(PATH, raw.as_deref(), &cursor_of(last)));
    let features: Vec<Value> = rows.iter().map(|r| feature(r, None)).collect();
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
    path = "/api/v1/transmitters/{radio}/{identifier}",
    tag = "transmitters",
    params(
        ("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "A MAC address in any common notation, or mcc-mnc-lac-cell_id for a cell (lac may be empty)"),
    ),
    responses(
        (status = 200, description = "The registry row with its track", body = super::schema::Feature, content_type = "application/geo+json"),
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
    TransmitterPath(key): TransmitterPath,
) -> ApiResult<Response> {
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
    let note = crate::db::notes::get(&mut conn, &key).await?;
    f["properties"]["note"] = serde_json::to_value(&note).unwrap_or(Value::Null);
    Ok(geojson::response(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(q: &str) -> ApiResult<TransmitterSearch> {
        let (properties, list) =
            query::parse::<(TransmitterPropertyParams, TransmitterListParams)>(q)?;
        list.search(properties, 100, 1000)
    }

    #[test]
    fn list_parameters_make_the_search() {
        let s = search("radio=wifi,ble&sort=detections&limit=5&name=net").expect("parses");
        assert_eq!(s.radios, vec![SignalType::Wifi, SignalType::Ble]);
        assert_eq!(s.sort, Sort::Detections);
        assert_eq!(s.limit, 5);
    }

    #[test]
    fn unusable_parameters_are_refused() {
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
            assert!(search(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_next_link_cursor_reads_back() {
        let s =
            search("after=2026-11-30T07:58:12.123456Z,42,0,cellular,262-1--10001").expect("cursor");
        let after = s.after.expect("after");
        assert_eq!(after.detections, 42);
        assert_eq!(after.key.identifier, "262-1--10001");
        assert_eq!(
            after.to_string(),
            "2026-11-30T07:58:12.123456Z,42,0,cellular,262-1--10001"
        );
    }
}
