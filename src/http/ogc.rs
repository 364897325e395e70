//! OGC API – Features, Part 1 (core, GeoJSON, OpenAPI 3.0) at `/ogc`: the detections and the
//! transmitter registry as collections that QGIS, GDAL/ogr2ogr and other OGC clients read
//! without a plugin. Requests are translated into the search parameters of the REST API, so
//! both answer the same rows for the same filters.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::db::detections as detection_store;
use crate::db::registry as registry_store;
use crate::domain::search::{DetectionSearch, SearchLimits};
use crate::error::{ApiError, ApiResult};
use crate::http::geojson::{self, link};
use crate::http::guard::RequireRead;
use crate::http::params::Origin;
use crate::http::transmitters;
use crate::state::AppState;

const GEOJSON: &str = "application/geo+json";
const JSON: &str = "application/json";
const OPENAPI: &str = "application/vnd.oai.openapi+json;version=3.0";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const CONFORMANCE: [&str; 3] = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ogc", get(landing))
        .route("/ogc/", get(landing))
        .route("/ogc/conformance", get(conformance))
        .route("/ogc/api", get(api))
        .route("/ogc/collections", get(collections))
        .route("/ogc/collections/{id}", get(collection))
        .route("/ogc/collections/{id}/items", get(items))
        .route("/ogc/collections/{id}/items/{fid}", get(item))
}

/// The two collections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collection {
    Detections,
    Transmitters,
}

impl Collection {
    const ALL: [Collection; 2] = [Self::Detections, Self::Transmitters];

    fn parse(id: &str) -> ApiResult<Self> {
        match id {
            "detections" => Ok(Self::Detections),
            "transmitters" => Ok(Self::Transmitters),
            other => Err(ApiError::NotFound {
                detail: format!("no collection `{other}` (detections, transmitters)"),
            }),
        }
    }

    fn id(self) -> &'static str {
        match self {
            Self::Detections => "detections",
            Self::Transmitters => "transmitters",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Detections => "Detections",
            Self::Transmitters => "Transmitters",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Detections => "Every wifi, Bluetooth, BLE and cellular detection at the capture device's fix",
            Self::Transmitters => "The transmitter registry: each transmitter once, at its estimated position, with its following score and flags",
        }
    }

    /// Property filters besides bbox, datetime and limit (the REST API's names).
    fn filters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Detections => &[
                (
                    "signal_type",
                    "wifi, bluetooth, ble or cellular (comma list)",
                ),
                ("device_id", "capture device UUID"),
                ("is_suspicious", "true or false"),
                ("bssid", "wifi access point MAC"),
                ("bt_address", "Bluetooth address"),
                ("ssid", "case-insensitive substring of the SSID"),
                ("min_signal_dbm", "at least this signal strength"),
                (
                    "min_score",
                    "transmitter's following score at least (0-100)",
                ),
            ],
            Self::Transmitters => &[
                ("radio", "wifi, bluetooth, ble or cellular (comma list)"),
                ("name", "substring of a name or SSID"),
                ("vendor", "substring of the vendor"),
                ("device_id", "seen by this capture device"),
                ("tracker", "tracker class, or `any`"),
                (
                    "level",
                    "following level at least: watch, suspicious, alert",
                ),
                ("min_score", "following score at least (0-100)"),
                ("flag", "carrying this rogue flag"),
            ],
        }
    }
}

fn json_response(body: Value, media: &'static str) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

/// Only JSON encodings are offered; `f` may ask for one by name.
fn check_format(f: Option<&str>) -> ApiResult<()> {
    match f {
        None | Some("json" | "geojson" | "application/json" | "application/geo+json") => Ok(()),
        Some(_) => Err(ApiError::bad_parameter("f", "must be json or geojson")),
    }
}

fn query_f(raw: Option<&str>, allowed: &[&str]) -> ApiResult<()> {
    let params = crate::http::params::read(raw, allowed)?;
    check_format(params.get("f").map(String::as_str))
}

async fn landing(
    _caller: RequireRead,
    Origin(origin): Origin,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    query_f(raw.as_deref(), &["f"])?;
    let base = format!("{origin}/ogc");
    Ok(json_response(
        json!({
            "title": "ShadowCheck",
            "description": "Wifi, Bluetooth, BLE and cellular detections and the transmitter registry, as OGC API – Features",
            "links": [
                link(base.clone(), "self", JSON, "This document"),
                link(format!("{base}/api"), "service-desc", OPENAPI, "The API definition"),
                link(format!("{base}/conformance"), "conformance", JSON, "Conformance classes"),
                link(format!("{base}/collections"), "data", JSON, "The collections"),
            ],
        }),
        JSON,
    ))
}

async fn conformance(_caller: RequireRead, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    query_f(raw.as_deref(), &["f"])?;
    Ok(json_response(json!({"conformsTo": CONFORMANCE}), JSON))
}

/// Spatial and temporal extent of a collection (kept a while: `query::summary`).
async fn extent(state: &AppState) -> ApiResult<Value> {
    let crate::db::tiles::Extent {
        bounds,
        first,
        last,
    } = state
        .extent
        .get_or_compute(|| async {
            let mut conn = state.read().await?;
            Ok::<_, ApiError>(crate::db::tiles::extent(&mut conn).await?)
        })
        .await?;
    let bbox = bounds.map_or([-180.0, -90.0, 180.0, 90.0], |b| {
        [b.min_lon, b.min_lat, b.max_lon, b.max_lat]
    });
    let stamp = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    Ok(json!({
        "spatial": {"bbox": [bbox], "crs": CRS84},
        "temporal": {"interval": [[stamp(first), stamp(last)]], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"},
    }))
}

fn describe(c: Collection, origin: &str, extent: &Value) -> Value {
    let base = format!("{origin}/ogc/collections/{}", c.id());
    json!({
        "id": c.id(),
        "title": c.title(),
        "description": c.description(),
        "itemType": "feature",
        "crs": [CRS84],
        "extent": extent,
        "links": [
            link(base.clone(), "self", JSON, "This collection"),
            link(format!("{base}/items"), "items", GEOJSON, "Its features"),
        ],
    })
}

async fn collections(
    State(state): State<AppState>,
    _caller: RequireRead,
    Origin(origin): Origin,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    query_f(raw.as_deref(), &["f"])?;
    let extent = extent(&state).await?;
    let list: Vec<Value> = Collection::ALL
        .iter()
        .map(|c| describe(*c, &origin, &extent))
        .collect();
    Ok(json_response(
        json!({
            "links": [link(format!("{origin}/ogc/collections"), "self", JSON, "The collections")],
            "collections": list,
        }),
        JSON,
    ))
}

async fn collection(
    State(state): State<AppState>,
    _caller: RequireRead,
    Origin(origin): Origin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let c = Collection::parse(&id)?;
    query_f(raw.as_deref(), &["f"])?;
    let extent = extent(&state).await?;
    Ok(json_response(describe(c, &origin, &extent), JSON))
}

/// `[start, end)`, either end open.
type Interval = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A `datetime` instant or interval (`a/b`, either end `..` or empty for open) as a half-open
/// `[start, end)`: OGC intervals include their end, so a closed end moves on by a microsecond
/// (the database's resolution).
fn datetime(value: &str) -> ApiResult<Interval> {
    let bad = || {
        ApiError::bad_parameter(
            "datetime",
            "must be an RFC 3339 instant or an interval start/end (`..` for an open end)",
        )
    };
    let instant = |s: &str| -> ApiResult<Option<DateTime<Utc>>> {
        let s = s.trim();
        if s.is_empty() || s == ".." {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad())
    };
    let one_past = |t: DateTime<Utc>| t + Duration::microseconds(1);
    match value.split_once('/') {
        None => {
            let t = instant(value)?.ok_or_else(bad)?;
            Ok((Some(t), Some(one_past(t))))
        }
        Some((a, b)) => {
            let (start, end) = (instant(a)?, instant(b)?.map(one_past));
            if start.is_none() && end.is_none() && !(a.trim() == ".." || b.trim() == "..") {
                return Err(bad());
            }
            if let (Some(s), Some(e)) = (start, end) {
                if s >= e {
                    return Err(ApiError::bad_parameter(
                        "datetime",
                        "the interval ends before it starts",
                    ));
                }
            }
            Ok((start, end))
        }
    }
}

/// OGC `bbox`: four numbers, or six (the heights are ignored: fixes are 2D here), in CRS84.
fn bbox(value: &str) -> ApiResult<String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    match parts.len() {
        4 => Ok(parts.join(",")),
        6 => Ok([parts[0], parts[1], parts[3], parts[4]].join(",")),
        _ => Err(ApiError::bad_parameter(
            "bbox",
            "must be minLon,minLat,maxLon,maxLat (or with heights, six numbers)",
        )),
    }
}

/// The items request as the REST API's query string: `bbox`, `datetime` and `limit` in their
/// OGC forms, property filters as they are, and `after` (the cursor of our `next` links).
fn translate(c: Collection, raw: Option<&str>, limits: SearchLimits) -> ApiResult<String> {
    let mut allowed: Vec<&str> = vec!["bbox", "bbox-crs", "datetime", "limit", "after", "f"];
    allowed.extend(c.filters().iter().map(|(name, _)| *name));
    let params = crate::http::params::read(raw, &allowed)?;
    check_format(params.get("f").map(String::as_str))?;
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Some(crs) = params.get("bbox-crs") {
        if crs != CRS84 {
            return Err(ApiError::bad_parameter("bbox-crs", format!("only {CRS84}")));
        }
    }
    if let Some(b) = params.get("bbox") {
        out.append_pair("bbox", &bbox(b)?);
    }
    if let Some(d) = params.get("datetime") {
        let (start, end) = datetime(d)?;
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        if let Some(s) = start {
            out.append_pair("start", &stamp(s));
        }
        if let Some(e) = end {
            // The registry's `end` is inclusive (seen at or before).
            let e = match c {
                Collection::Detections => e,
                Collection::Transmitters => e - Duration::microseconds(1),
            };
            out.append_pair("end", &stamp(e));
        }
    }
    // Beyond the maximum is the maximum, not an error (OGC API – Features /req/core/fc-limit).
    let limit = match params.get("limit") {
        None => limits.default_limit,
        Some(l) => match l.trim().parse::<u64>() {
            Ok(n) if n >= 1 => n.min(u64::from(limits.max_limit)) as u32,
            _ => {
                return Err(ApiError::bad_parameter(
                    "limit",
                    "must be a positive integer",
                ))
            }
        },
    };
    out.append_pair("limit", &limit.to_string());
    for (name, _) in c.filters() {
        if let Some(v) = params.get(*name) {
            out.append_pair(name, v);
        }
    }
    if let Some(after) = params.get("after") {
        out.append_pair("after", after);
    }
    Ok(out.finish())
}

async fn items(
    State(state): State<AppState>,
    _caller: RequireRead,
    Origin(origin): Origin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let c = Collection::parse(&id)?;
    let q = &state.settings.query;
    let limits = SearchLimits {
        default_limit: q.default_limit.min(100),
        max_limit: q.max_limit,
    };
    let internal = translate(c, raw.as_deref(), limits)?;
    match c {
        Collection::Detections => {
            let pairs = form_urlencoded::parse(internal.as_bytes());
            let search = DetectionSearch::parse(pairs, limits)
                .map_err(|e| ApiError::bad_parameter(&e.parameter, e.reason))?;
            let mut conn = state.read().await?;
            let mut rows = detection_store::search(&mut conn, &search).await?;
            drop(conn);
            let has_more = rows.len() > search.limit() as usize;
            rows.truncate(search.limit() as usize);
            let next = rows.last().filter(|_| has_more).map(|r| r.id.to_string());
            // Serialised straight from the rows: a page of 1000 is ~1 MiB of JSON.
            let features: Vec<_> = rows.iter().map(crate::http::detections::feature).collect();
            Ok(items_page(&origin, c, raw.as_deref(), &features, next))
        }
        Collection::Transmitters => {
            let search = transmitters::parse_search(
                Some(&internal),
                limits.default_limit,
                limits.max_limit,
            )?;
            let mut conn = state.read().await?;
            let mut rows = registry_store::search(&mut conn, &search).await?;
            drop(conn);
            let has_more = rows.len() as i64 > search.limit;
            rows.truncate(search.limit as usize);
            let next = rows
                .last()
                .filter(|_| has_more)
                .map(transmitters::cursor_of);
            let features: Vec<Value> = rows.iter().map(transmitter_feature).collect();
            Ok(items_page(&origin, c, raw.as_deref(), &features, next))
        }
    }
}

/// One items page of a collection: absolute links, and one back to the collection.
fn items_page(
    origin: &str,
    c: Collection,
    raw: Option<&str>,
    features: &[impl serde::Serialize],
    next: Option<String>,
) -> Response {
    let collection = link(
        format!("{origin}/ogc/collections/{}", c.id()),
        "collection",
        JSON,
        "The collection",
    );
    let path = format!("/ogc/collections/{}/items", c.id());
    geojson::page(origin, &path, raw, features, next, vec![collection])
}

/// A registry row with its integer id as the feature id, and its REST key as a property.
fn transmitter_feature(row: &registry_store::TransmitterRow) -> Value {
    let mut f = transmitters::feature(row, None);
    f["properties"]["key"] = f["id"].take();
    f["id"] = json!(row.transmitter_id);
    f
}

async fn item(
    State(state): State<AppState>,
    _caller: RequireRead,
    Origin(origin): Origin,
    Path((id, fid)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let c = Collection::parse(&id)?;
    query_f(raw.as_deref(), &["f"])?;
    let fid: i64 = fid
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no feature `{fid}` in {} (ids are integers)", c.id()),
        })?;
    let mut conn = state.read().await?;
    let mut feature = match c {
        Collection::Detections => detection_store::get(&mut conn, fid)
            .await?
            .map(|r| serde_json::to_value(crate::http::detections::feature(&r)))
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        Collection::Transmitters => registry_store::get_by_id(&mut conn, fid)
            .await?
            .map(|r| transmitter_feature(&r)),
    }
    .ok_or_else(|| ApiError::NotFound {
        detail: format!("no feature {fid} in {}", c.id()),
    })?;
    let base = format!("{origin}/ogc/collections/{}", c.id());
    feature["links"] = json!([
        link(
            format!("{base}/items/{fid}"),
            "self",
            GEOJSON,
            "This feature"
        ),
        link(base, "collection", JSON, "The collection"),
    ]);
    Ok(json_response(feature, GEOJSON))
}

/// The OpenAPI 3.0 definition of these endpoints (the REST API has its own, 3.1, at
/// `/api/v1/openapi.json`). Clients read `limit`'s bounds from it to size their pages.
async fn api(State(state): State<AppState>, Origin(origin): Origin) -> Response {
    let q = &state.settings.query;
    let problem = json!({"description": "A problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"type": "object"}}}});
    let f = json!({"name": "f", "in": "query", "required": false, "schema": {"type": "string", "enum": ["json", "geojson"]}});
    let mut paths = serde_json::Map::new();
    let plain = |summary: &str| {
        json!({"get": {"summary": summary, "parameters": [f.clone()], "responses": {
            "200": {"description": summary, "content": {JSON: {"schema": {"type": "object"}}}},
            "400": problem.clone(), "401": problem.clone(), "404": problem.clone(),
            "503": problem.clone()}}})
    };
    paths.insert("/".into(), plain("Landing page"));
    paths.insert("/conformance".into(), plain("Conformance classes"));
    paths.insert("/collections".into(), plain("The collections"));
    for c in Collection::ALL {
        let mut parameters = vec![
            json!({"name": "bbox", "in": "query", "required": false, "style": "form", "explode": false,
                   "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}}),
            json!({"name": "bbox-crs", "in": "query", "required": false, "schema": {"type": "string", "enum": [CRS84]}}),
            json!({"name": "datetime", "in": "query", "required": false, "schema": {"type": "string"}}),
            json!({"name": "limit", "in": "query", "required": false, "style": "form", "explode": false,
                   "schema": {"type": "integer", "minimum": 1, "maximum": q.max_limit, "default": q.default_limit.min(100)}}),
            json!({"name": "after", "in": "query", "required": false, "description": "cursor from a `next` link", "schema": {"type": "string"}}),
            f.clone(),
        ];
        for (name, doc) in c.filters() {
            parameters.push(json!({"name": name, "in": "query", "required": false, "description": doc, "schema": {"type": "string"}}));
        }
        let geojson_ok = |d: &str| json!({"description": d, "content": {GEOJSON: {"schema": {"type": "object"}}}});
        paths.insert(format!("/collections/{}", c.id()), plain(c.title()));
        paths.insert(
            format!("/collections/{}/items", c.id()),
            json!({"get": {"summary": format!("{} as GeoJSON features, keyset-paged", c.title()),
                "parameters": parameters,
                "responses": {"200": geojson_ok("Features"), "400": problem.clone(), "401": problem.clone(),
                    "404": problem.clone(), "503": problem.clone()}}}),
        );
        paths.insert(
            format!("/collections/{}/items/{{featureId}}", c.id()),
            json!({"get": {"summary": "One feature",
                "parameters": [{"name": "featureId", "in": "path", "required": true, "schema": {"type": "integer"}}, f.clone()],
                "responses": {"200": geojson_ok("The feature"), "400": problem.clone(), "401": problem.clone(),
                    "404": problem.clone(), "503": problem.clone()}}}),
        );
    }
    json_response(
        json!({
            "openapi": "3.0.3",
            "info": {"title": "ShadowCheck OGC API – Features", "version": env!("CARGO_PKG_VERSION")},
            "servers": [{"url": format!("{origin}/ogc")}],
            "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
            "security": [{"bearer": []}, {"api_key": []}],
            "paths": paths,
        }),
        OPENAPI,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn datetimes_are_instants_or_closed_and_open_intervals() {
        let a = "2026-11-01T00:00:00Z";
        let b = "2026-11-02T00:00:00Z";
        let us = Duration::microseconds(1);
        assert_eq!(datetime(a).expect("valid"), (Some(t(a)), Some(t(a) + us)));
        assert_eq!(
            datetime(&format!("{a}/{b}")).expect("valid"),
            (Some(t(a)), Some(t(b) + us))
        );
        assert_eq!(
            datetime(&format!("../{b}")).expect("valid"),
            (None, Some(t(b) + us))
        );
        assert_eq!(
            datetime(&format!("{a}/..")).expect("valid"),
            (Some(t(a)), None)
        );
        assert_eq!(
            datetime(&format!("{a}/")).expect("valid"),
            (Some(t(a)), None)
        );
        assert_eq!(datetime("../..").expect("valid"), (None, None));
        for bad in [
            "",
            "/",
            "yesterday",
            "2026-11-02T00:00:00Z/2026-11-01T00:00:00Z",
        ] {
            assert!(datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_translate_to_the_search_parameters() {
        let limits = SearchLimits {
            default_limit: 10,
            max_limit: 1000,
        };
        let q = translate(
            Collection::Detections,
            Some("bbox=13,52,0,14,53,100&limit=5000&signal_type=wifi&f=json"),
            limits,
        )
        .expect("valid");
        assert_eq!(q, "bbox=13%2C52%2C14%2C53&limit=1000&signal_type=wifi");
        assert!(translate(Collection::Detections, Some("radio=wifi"), limits).is_err());
        assert!(translate(Collection::Transmitters, Some("ssid=x"), limits).is_err());
        assert!(translate(Collection::Detections, Some("limit=0"), limits).is_err());
        assert!(translate(Collection::Detections, Some("bbox-crs=EPSG:3857"), limits).is_err());
        assert!(translate(Collection::Detections, Some("f=xml"), limits).is_err());
    }
}
