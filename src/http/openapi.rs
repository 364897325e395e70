//! The OpenAPI 3.1 description, collected from the handlers' annotations: a leaf that imports
//! the handlers and the schema types and is imported only by the router. Served at
//! `/api/v1/openapi.json` and used by the schema-driven fuzzer in CI.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schema::{DetectionInput, Feature, FeatureCollection, Health, Problem};
use crate::state::AppState;

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
        super::geolocate::geolocate,
        super::devices::list,
        super::devices::create,
        super::devices::read,
        super::devices::replace,
        super::devices::remove,
        super::notes::replace,
        super::detector::threat,
        super::events::events,
        super::notes::remove,
        super::transmitters::list,
        super::transmitters::one,
        super::detector::threats,
        super::detector::feedback_give,
        super::detector::feedback_withdraw,
        super::detector::allowlist_list,
        super::detector::allowlist_add,
        super::detector::allowlist_remove,
        super::detector::zones_list,
        super::detector::zones_add,
        super::detector::zones_remove,
        super::tiles::tile,
        super::tiles::tilejson,
    ),
    components(schemas(DetectionInput, Problem, FeatureCollection, Feature, crate::ingest::IngestReport, Health, crate::ingest::ImportReport, crate::db::devices::Device, crate::db::notes::Note, crate::http::notes::NoteInput)),
    modifiers(&Security),
    tags((name = "detections"), (name = "imports"), (name = "transmitters"), (name = "health"), (name = "maps"), (name = "devices"), (name = "geolocate"))
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
