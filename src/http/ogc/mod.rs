//! OGC API – Features, Part 1 (core, GeoJSON, OpenAPI 3.0) at `/ogc`: the detections and the
//! transmitter registry as collections that QGIS, GDAL/ogr2ogr and other OGC clients read
//! without a plugin. Items requests read the REST API's property filters (the same parameter
//! structs) into the same searches, so both answer the same rows for the same filters.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::IntoParams;

use crate::db::detections as detection_store;
use crate::db::registry as registry_store;
use crate::domain::search::{
    Area, DetectionSearch, TimeWindow, TransmitterCursor, TransmitterSearch,
};
use crate::error::{ApiError, ApiResult};
use crate::http::geojson::{self, link};
use crate::http::guard::RequireRead;
use crate::http::origin::Origin;
use crate::http::params::{self, PropertyParams};
use crate::http::query::{self, Query};
use crate::http::transmitters::{self, TransmitterPropertyParams};
use crate::state::AppState;

mod request;

use request::{FormatOnly, ItemParams};

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

    /// Property filters besides bbox, datetime and limit: the REST API's, read from the same
    /// parameter structs, with their descriptions.
    fn filters(self) -> Vec<(String, String)> {
        let params = match self {
            Self::Detections => PropertyParams::into_params(|| Some(ParameterIn::Query)),
            Self::Transmitters => {
                TransmitterPropertyParams::into_params(|| Some(ParameterIn::Query))
            }
        };
        params
            .into_iter()
            .map(|p| (p.name, p.description.unwrap_or_default()))
            .collect()
    }
}

fn json_response(body: Value, media: &'static str) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

async fn landing(
    _caller: RequireRead,
    Origin(origin): Origin,
    Query(_): Query<FormatOnly>,
) -> ApiResult<Response> {
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

async fn conformance(_caller: RequireRead, Query(_): Query<FormatOnly>) -> ApiResult<Response> {
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
    Query(_): Query<FormatOnly>,
) -> ApiResult<Response> {
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
    Query(_): Query<FormatOnly>,
) -> ApiResult<Response> {
    let c = Collection::parse(&id)?;
    let extent = extent(&state).await?;
    Ok(json_response(describe(c, &origin, &extent), JSON))
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
    let default_limit = q.default_limit.min(100);
    let query = raw.as_deref().unwrap_or("");
    match c {
        Collection::Detections => {
            let (item, properties) = query::parse::<(ItemParams, PropertyParams)>(query)?;
            let (start, end) = item.interval();
            let window = TimeWindow::new(start, end)
                .map_err(|e| ApiError::bad_parameter("datetime", e.reason))?;
            let after = item
                .after
                .as_deref()
                .map(|a| a.trim().parse::<i64>())
                .transpose()
                .map_err(|_| ApiError::bad_parameter("after", "must be a detection id"))?;
            let area = item
                .bbox
                .as_ref()
                .map_or(Area::Anywhere, |b| Area::BBox(b.0));
            let limit = item.limit(default_limit, q.max_limit)?;
            let search =
                DetectionSearch::new(area, params::filters(window, properties), limit, after)?;
            let mut conn = state.read().await?;
            let mut rows = detection_store::search(&mut conn, &search).await?;
            drop(conn);
            let has_more = rows.len() > search.limit() as usize;
            rows.truncate(search.limit() as usize);
            let next = rows
                .last()
                .filter(|_| has_more)
                .map(|r| continuation(c, raw.as_deref(), &r.id.to_string(), limit, q));
            // Serialised straight from the rows: a page of 1000 is ~1 MiB of JSON.
            let features: Vec<_> = rows.iter().map(crate::http::detections::feature).collect();
            Ok(items_page(&origin, c, raw.as_deref(), &features, next))
        }
        Collection::Transmitters => {
            let (item, properties) =
                query::parse::<(ItemParams, TransmitterPropertyParams)>(query)?;
            let (start, end) = item.interval();
            let after = item
                .after
                .as_deref()
                .map(|a| a.parse::<TransmitterCursor>())
                .transpose()
                .map_err(|e| ApiError::bad_parameter("after", e))?;
            let search = TransmitterSearch {
                bbox: item.bbox.as_ref().map(|b| b.0),
                seen_from: start,
                // The registry's `end` is inclusive (seen at or before).
                seen_until: end.map(|e| e - Duration::microseconds(1)),
                limit: item.limit(default_limit, q.max_limit)?,
                after,
                ..properties.into()
            };
            let mut conn = state.read().await?;
            let mut rows = registry_store::search(&mut conn, &search).await?;
            drop(conn);
            let has_more = rows.len() > search.limit as usize;
            rows.truncate(search.limit as usize);
            let next = rows.last().filter(|_| has_more).map(|r| {
                continuation(
                    c,
                    raw.as_deref(),
                    &transmitters::cursor_of(r),
                    search.limit,
                    q,
                )
            });
            let features: Vec<Value> = rows.iter().map(transmitter_feature).collect();
            Ok(items_page(&origin, c, raw.as_deref(), &features, next))
        }
    }
}

/// The `next` link: the same query from after `cursor`, in pages of at least
/// `query.default_limit`. GDAL 3.6 asks for 10 features a page whatever the API advertises and
/// then follows `next` links as given, so a copy of 100k features would be 10,000 requests
/// (cut off by the per-key rate long before the end); growing the pages it follows makes it
/// 100. A client's `limit` still bounds the page it asked for.
fn continuation(
    c: Collection,
    raw: Option<&str>,
    cursor: &str,
    asked: u32,
    q: &crate::config::QuerySettings,
) -> String {
    let size = asked.max(q.default_limit).min(q.max_limit);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "limit" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("limit", &size.to_string());
    geojson::next_href(
        &format!("/ogc/collections/{}/items", c.id()),
        Some(&query.finish()),
        cursor,
    )
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
    Query(_): Query<FormatOnly>,
) -> ApiResult<Response> {
    let c = Collection::parse(&id)?;
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
