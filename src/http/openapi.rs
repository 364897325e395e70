//! The OpenAPI 3.1 description, generated from the handlers' annotations and these schema types;
//! served at `/api/v1/openapi.json` and used by the schema-driven fuzzer in CI.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::state::AppState;

/// One detection as sent by a capture device. `signal_type` decides which fields apply.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct DetectionInput {
    /// RFC 3339; not before 1990, not more than `ingest.max_future_skew_secs` ahead.
    #[schema(format = DateTime, example = "2026-11-23T11:00:00Z")]
    detected_at: String,
    #[schema(minimum = -90, maximum = 90)]
    latitude: f64,
    #[schema(minimum = -180, maximum = 180)]
    longitude: f64,
    signal_type: SignalTypeDoc,
    #[schema(minimum = 0, maximum = 86400000)]
    capture_duration_ms: Option<i64>,
    #[schema(minimum = -1000, maximum = 50000)]
    altitude_meters: Option<f64>,
    #[schema(minimum = 0, maximum = 100000)]
    accuracy_meters: Option<f64>,
    #[schema(max_length = 32)]
    protocol_version: Option<String>,
    /// wifi only; at most 32 bytes.
    ssid: Option<String>,
    /// wifi (required for wifi): a MAC address.
    #[schema(
        pattern = "^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$",
        example = "a4:2b:b0:11:22:33"
    )]
    bssid: Option<String>,
    #[schema(minimum = 1, maximum = 233)]
    channel: Option<i64>,
    #[schema(minimum = 1, maximum = 100000)]
    frequency_mhz: Option<i64>,
    #[schema(minimum = -150, maximum = 0)]
    signal_strength_dbm: Option<i64>,
    /// bluetooth/ble (required for them): a MAC address.
    #[schema(
        pattern = "^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$",
        example = "d8:3a:dd:00:11:22"
    )]
    bt_address: Option<String>,
    bt_name: Option<String>,
    #[schema(minimum = 0, maximum = 16777215)]
    bt_class: Option<i64>,
    #[schema(minimum = -150, maximum = 20)]
    bt_rssi: Option<i64>,
    /// cellular (required): 1..2^28-1 (2^36-1 for NR).
    cell_id: Option<i64>,
    lac: Option<i64>,
    #[schema(minimum = 1, maximum = 999)]
    mcc: Option<i64>,
    #[schema(minimum = 0, maximum = 999)]
    mnc: Option<i64>,
    #[schema(example = "LTE")]
    network_type: Option<String>,
    #[schema(format = Uuid)]
    device_id: Option<String>,
    device_name: Option<String>,
    is_suspicious: Option<bool>,
    #[schema(minimum = 0, maximum = 100)]
    surveillance_score: Option<f64>,
    #[schema(value_type = Option<Object>)]
    raw_data: Option<serde_json::Value>,
    tags: Option<Vec<String>>,
}

/// Which radio; case-insensitive on input.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SignalTypeDoc {
    Wifi,
    Bluetooth,
    Ble,
    Cellular,
}

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
    /// 1..=query.max_limit (default 1000).
    limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    after: Option<i64>,
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
    ),
    components(schemas(DetectionInput, Problem, FeatureCollection, Feature, crate::ingest::IngestReport, Health, crate::ingest::ImportReport)),
    modifiers(&Security),
    tags((name = "detections"), (name = "imports"), (name = "health"))
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
