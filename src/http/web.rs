//! The built-in map page at `/`: static files embedded in the binary (the page, its script and
//! style, and MapLibre GL JS vendored from npm, see web/vendor/README.md), so it works offline.
//! The page holds no data and needs no key; the tiles it draws do.

use axum::extract::{Path, State};
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
use crate::http::encoding;
use crate::state::AppState;

pub const MAPLIBRE_VERSION: &str = "6.17.0";

const INDEX: &str = include_str!("../../web/index.html");
const MAP_JS: &str = include_str!("../../web/map.js");
const THREATS_JS: &str = include_str!("../../web/threats.js");
const BASEMAP_JS: &str = include_str!("../../web/basemap.js");
const TIMELINE_JS: &str = include_str!("../../web/timeline.js");
const REPORT_HTML: &str = include_str!("../../web/report.html");
const REPORT_JS: &str = include_str!("../../web/report.js");
const REPORT_CSS: &str = include_str!("../../web/report.css");
const MAP_CSS: &str = include_str!("../../web/map.css");
const FAVICON: &str = include_str!("../../web/favicon.svg");
/// The offline basemap: land, borders and lakes at 1:50m (web/basemap/build.mjs).
const WORLD: &[u8] = include_bytes!("../../web/basemap/world.geojson");
/// (directory, file, media type, bytes) under /map/vendor.
const VENDOR: [(&str, &str, &str, &[u8]); 6] = [
    (
        "maplibre-gl",
        "maplibre-gl.mjs",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/maplibre-gl/maplibre-gl.mjs"),
    ),
    (
        "maplibre-gl",
        "maplibre-gl-worker.mjs",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/maplibre-gl/maplibre-gl-worker.mjs"),
    ),
    (
        "maplibre-gl",
        "maplibre-gl.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/vendor/maplibre-gl/maplibre-gl.css"),
    ),
    (
        "maplibre-gl",
        "LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/maplibre-gl/LICENSE.txt"),
    ),
    (
        "pmtiles",
        "pmtiles.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/pmtiles/pmtiles.js"),
    ),
    (
        "pmtiles",
        "LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/pmtiles/LICENSE.txt"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/map/config.json", get(config))
        .route(
            "/map/favicon.svg",
            get(|s| page_file(s, "image/svg+xml", FAVICON.as_bytes(), false)),
        )
        .route("/map/map.js", get(|s| script(s, MAP_JS)))
        .route("/map/threats.js", get(|s| script(s, THREATS_JS)))
        .route("/map/basemap.js", get(|s| script(s, BASEMAP_JS)))
        .route("/map/timeline.js", get(|s| script(s, TIMELINE_JS)))
        .route("/map/report.js", get(|s| script(s, REPORT_JS)))
        .route(
            "/map/report.css",
            get(|s| page_file(s, "text/css; charset=utf-8", REPORT_CSS.as_bytes(), false)),
        )
        // The report holds no data either: its script reads the threat with the stored key.
        .route(
            "/report/{radio}/{identifier}/{device_id}",
            get(|s| page_file(s, "text/html; charset=utf-8", REPORT_HTML.as_bytes(), false)),
        )
        .route(
            "/map/map.css",
            get(|s| page_file(s, "text/css; charset=utf-8", MAP_CSS.as_bytes(), false)),
        )
        .route("/map/vendor/{dir}/{file}", get(vendor))
        .route("/map/basemap/world.geojson", get(world))
        .route("/map/basemap.pmtiles", get(pmtiles))
}

/// Scripts and styles from this server only; data from this server (and the basemap's hosts
/// when one is configured); MapLibre's module worker from this server.
fn content_security_policy(state: &AppState) -> String {
    let basemap = &state.settings.map.basemap_style_url;
    let extra = if basemap.is_empty() {
        ""
    } else if basemap.starts_with("http://") {
        " https: http:"
    } else {
        " https:"
    };
    format!(
        "default-src 'none'; script-src 'self'; worker-src 'self' blob:; style-src 'self'; \
         img-src 'self' data: blob:{extra}; connect-src 'self'{extra}; font-src 'self'{extra}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// A file of the page, under the page's policy: a worker script's own response carries the
/// policy the worker runs under, so MapLibre's worker needs it too (to fetch the tiles).
async fn page_file(
    State(state): State<AppState>,
    media: &'static str,
    body: &'static [u8],
    long_lived: bool,
) -> Response {
    let mut response = file(media, body, long_lived);
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&state)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

fn file(media: &'static str, body: &'static [u8], long_lived: bool) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if long_lived {
            "public, max-age=86400"
        } else {
            "no-cache"
        }),
    );
    response
}

/// The offline basemap, gzipped once (2 MiB of GeoJSON is about 0.6 MiB) for browsers that
/// accept it.
async fn world(state: State<AppState>, headers: HeaderMap) -> Response {
    static GZIPPED: OnceLock<Vec<u8>> = OnceLock::new();
    let media = "application/geo+json";
    if !encoding::accepts_gzip(&headers) {
        return page_file(state, media, WORLD, true).await;
    }
    let body = GZIPPED.get_or_init(|| encoding::gzip(WORLD));
    let mut response = page_file(state, media, body, true).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

async fn script(state: State<AppState>, body: &'static str) -> Response {
    page_file(
        state,
        "text/javascript; charset=utf-8",
        body.as_bytes(),
        false,
    )
    .await
}

/// The operator's PMTiles basemap, with range requests (a PMTiles reader asks for the header,
/// then for the directories and tiles it needs, never the whole file). A map, not this service's
/// data: no key, as for the page itself.
async fn pmtiles(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let path = &state.settings.map.pmtiles_path;
    if path.is_empty() {
        return Err(ApiError::NotFound {
            detail: "no PMTiles basemap is configured (map.pmtiles_path)".into(),
        });
    }
    let served = ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::Internal(format!("the PMTiles basemap: {e}")))?;
    let mut response = served.map(Body::new);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

async fn index(state: State<AppState>) -> Response {
    page_file(state, "text/html; charset=utf-8", INDEX.as_bytes(), false).await
}

async fn config(State(state): State<AppState>) -> Response {
    let mut response = Json(json!({
        "basemap_style_url": state.settings.map.basemap_style_url,
        "offline_basemap": "/map/basemap/world.geojson",
        "pmtiles": (!state.settings.map.pmtiles_path.is_empty()).then_some("/map/basemap.pmtiles"),
        "public_read": state.auth.anonymous_read,
        "maplibre_version": MAPLIBRE_VERSION,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn vendor(
    state: State<AppState>,
    Path((dir, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some((_, _, media, body)) = VENDOR.iter().find(|(d, f, _, _)| *d == dir && *f == name)
    else {
        return Err(ApiError::NotFound {
            detail: format!("no file `{dir}/{name}` here"),
        });
    };
    Ok(page_file(state, media, body, true).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn the_page_loads_only_embedded_files() {
        for path in [
            "/map/vendor/maplibre-gl/maplibre-gl.css",
            "/map/map.css",
            "/map/map.js",
        ] {
            assert!(INDEX.contains(path), "{path}");
        }
        assert!(MAP_JS.contains("/map/vendor/maplibre-gl/maplibre-gl.mjs"));
        assert!(
            !INDEX.contains("http://") && !INDEX.contains("https://"),
            "no CDN"
        );
        assert_eq!(StatusCode::OK, file("text/plain", b"x", true).status());
    }
}
