//! The OpenAPI 3.1 description, generated from the handlers' annotations and these schema types;
//! served at `/api/v1/openapi.json` and used by the schema-driven fuzzer in CI.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::state::AppState;

/// One detection as sent by a capture device; its schema is derived from the field table
/// (`domain::fields`), so it cannot drift from what the validator accepts.
pub struct DetectionInput;

impl utoipa::PartialSchema for DetectionInput {
    fn schema() -> RefOr<Schema> {
        use crate::domain::fields::{Kind, FIELDS};
        use crate::domain::SignalType;
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One detection. `signal_type` decides which fields apply; null counts as absent.",
            ));
        for field in FIELDS {
            let always = field.required_for.len() == SignalType::ALL.len();
            let of = |t: Type| -> SchemaType {
                if always {
                    t.into()
                } else {
                    [t, Type::Null].into_iter().collect()
                }
            };
            let list = |types: &[SignalType]| -> String {
                types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut doc = field.doc.to_owned();
            if !field.only_for.is_empty() {
                doc.push_str(&format!(" Only for {}.", list(field.only_for)));
            }
            if !always && !field.required_for.is_empty() {
                doc.push_str(&format!(" Required for {}.", list(field.required_for)));
            }
            let doc = Some(doc);
            let schema: Schema = match field.kind {
                Kind::Timestamp => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(doc)
                    .into(),
                Kind::Coordinate { min, max }
                | Kind::Number { min, max }
                | Kind::Real { min, max } => ObjectBuilder::new()
                    .schema_type(of(Type::Number))
                    .minimum(Some(min))
                    .maximum(Some(max))
                    .description(doc)
                    .into(),
                Kind::Integer { min, max } => ObjectBuilder::new()
                    .schema_type(of(Type::Integer))
                    .minimum(Some(min as f64))
                    .maximum(Some(max as f64))
                    .description(doc)
                    .into(),
                Kind::Text { max_bytes } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .max_length(Some(max_bytes))
                    .description(doc)
                    .into(),
                Kind::Word { values } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .examples(values.iter().copied())
                    .description(doc)
                    .into(),
                Kind::Mac => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .pattern(Some("^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"))
                    .description(doc)
                    .into(),
                Kind::SignalType => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .enum_values(Some(SignalType::ALL.iter().map(|t| t.as_str())))
                    .description(doc)
                    .into(),
                Kind::Uuid => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(doc)
                    .into(),
                Kind::Boolean => ObjectBuilder::new()
                    .schema_type(of(Type::Boolean))
                    .description(doc)
                    .into(),
                Kind::Object { .. } => ObjectBuilder::new()
                    .schema_type(of(Type::Object))
                    .description(doc)
                    .into(),
                Kind::Tags { max_items } => ArrayBuilder::new()
                    .schema_type(of(Type::Array))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(64)),
                    )
                    .max_items(Some(max_items))
                    .description(doc)
                    .into(),
                Kind::Hex { max_bytes } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .pattern(Some("^([0-9A-Fa-f]{2})*$"))
                    .max_length(Some(2 * max_bytes))
                    .description(doc)
                    .into(),
                Kind::ServiceUuids { max_items } => ArrayBuilder::new()
                    .schema_type(of(Type::Array))
                    .items(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                        "^([0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$",
                    )))
                    .max_items(Some(max_items))
                    .description(doc)
                    .into(),
            };
            object = object.property(field.name, schema);
            if always {
                object = object.required(field.name);
            }
        }
        RefOr::T(object.into())
    }
}

impl ToSchema for DetectionInput {}

/// An RFC 9457 problem.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Problem {
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    parameter: Option<String>,
    errors: Option<Vec<crate::ingest::ItemError>>,
}

/// An RFC 7946 FeatureCollection of detections.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct FeatureCollection {
    #[schema(rename = "type", example = "FeatureCollection")]
    kind: String,
    #[schema(rename = "numberReturned")]
    number_returned: u64,
    #[schema(rename = "timeStamp", format = DateTime)]
    time_stamp: String,
    #[schema(value_type = Vec<Object>)]
    links: Vec<serde_json::Value>,
    features: Vec<Feature>,
}

/// A detection as a GeoJSON Feature: Point geometry, every column in `properties`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Feature {
    #[schema(rename = "type", example = "Feature")]
    kind: String,
    id: i64,
    #[schema(value_type = Object)]
    geometry: serde_json::Value,
    #[schema(value_type = Object)]
    properties: serde_json::Value,
}

/// Query parameters of `GET /api/v1/detections`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// minLon,minLat,maxLon,maxLat
    #[param(example = "13.3,52.4,13.5,52.6")]
    bbox: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    /// With lat/lon: geodesic radius in metres (0 < r <= 1000000).
    radius_m: Option<f64>,
    /// With lat/lon: the N nearest.
    nearest: Option<u32>,
    /// RFC 3339, inclusive.
    start: Option<String>,
    /// RFC 3339, exclusive.
    end: Option<String>,
    /// One or a comma list of wifi, bluetooth, ble, cellular.
    signal_type: Option<String>,
    bssid: Option<String>,
    bt_address: Option<String>,
    /// Case-insensitive substring.
    ssid: Option<String>,
    device_id: Option<String>,
    is_suspicious: Option<bool>,
    min_signal_dbm: Option<i32>,
    /// Detections whose transmitter scored at least this (0-100) for following.
    min_score: Option<f32>,
    /// 1..=query.max_limit (default 1000); for an export, an optional cap.
    limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    after: Option<i64>,
    /// Export every match as one streamed file: csv, fgb (FlatGeobuf), geojson, geojsonseq
    /// (RFC 8142) or kml. Absent: a GeoJSON page.
    #[param(inline, value_type = Option<String>, pattern = "^(csv|fgb|geojson|geojsonseq|kml)$")]
    f: Option<String>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TileParams {
    /// RFC 3339, inclusive.
    start: Option<String>,
    /// RFC 3339, exclusive.
    end: Option<String>,
    /// One or a comma list of wifi, bluetooth, ble, cellular.
    signal_type: Option<String>,
    device_id: Option<String>,
    is_suspicious: Option<bool>,
    /// Following score at least (0-100).
    min_score: Option<f32>,
    /// Detections layer only.
    bssid: Option<String>,
    /// Detections layer only.
    bt_address: Option<String>,
    /// Detections layer only: case-insensitive substring.
    ssid: Option<String>,
    /// Detections layer only.
    min_signal_dbm: Option<i32>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransmitterParams {
    /// One or a comma list of wifi, bluetooth, ble, cellular.
    radio: Option<String>,
    /// minLon,minLat,maxLon,maxLat of the estimated position.
    #[param(example = "13.3,52.4,13.5,52.6")]
    bbox: Option<String>,
    /// RFC 3339: last seen at or after.
    start: Option<String>,
    /// RFC 3339: first seen at or before.
    end: Option<String>,
    /// Case-insensitive substring of a name or SSID it used.
    name: Option<String>,
    /// Case-insensitive substring of the IEEE-registered vendor.
    vendor: Option<String>,
    /// Seen by this capture device.
    device_id: Option<String>,
    /// Tracker class, a comma list of apple_find_my, tile, chipolo, samsung_smarttag,
    /// google_find_my, pebblebee, apple_device; or `any` for every item tracker.
    tracker: Option<String>,
    /// At or above this following level: none, watch, suspicious, alert.
    level: Option<String>,
    /// Highest following score at least this (0 to 100).
    min_score: Option<f32>,
    /// Carrying this rogue flag: attack_tool_prefix, mobile_ap, cell_too_far, evil_twin,
    /// cell_area_change.
    flag: Option<String>,
    /// `last_seen` (default), `detections` or `score` (scored transmitters only), descending.
    sort: Option<String>,
    /// 1..=query.max_limit.
    limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ShadowCheck", description = "Geospatial signal-ingest API: wifi, bluetooth, BLE and cellular detections in PostGIS."),
    paths(
        super::detections::post_detections,
        super::detections::get_detections,
        super::detections::get_detection,
        super::stats::get_stats,
        super::health::get_live,
        super::health::get_ready,
        super::health::get_startup,
        super::health::get_detailed,
        super::imports::post_import,
        super::geosubmit::post_geosubmit,
        super::transmitters::list,
        super::transmitters::one,
        super::detector::threats,
        super::detector::allowlist_list,
        super::detector::allowlist_add,
        super::detector::allowlist_remove,
        super::detector::zones_list,
        super::detector::zones_add,
        super::detector::zones_remove,
        super::tiles::tile,
        super::tiles::tilejson,
    ),
    components(schemas(DetectionInput, Problem, FeatureCollection, Feature, crate::ingest::IngestReport, Health, crate::ingest::ImportReport)),
    modifiers(&Security),
    tags((name = "detections"), (name = "imports"), (name = "transmitters"), (name = "health"), (name = "maps"))
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
