//! `/tiles/{layer}/{z}/{x}/{y}.pbf` (Mapbox Vector Tiles 2.1) and `/tiles/{layer}.json`
//! (TileJSON 3.0) for the detections and transmitters layers, filtered like the search API.

use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db::tiles::{self as store, TileKind, TileShape};
use crate::domain::search::Filters;
use crate::domain::tile::{TileCoord, TileError, MAX_LAT, MAX_ZOOM};
use crate::error::{ApiError, ApiResult};
use crate::http::encoding;
use crate::http::guard::RequireRead;
use crate::http::origin::Origin;
use crate::http::params::{self, PropertyParams, WindowParams};
use crate::http::query::Query;
use crate::query::tile_cache::{CachedTile, TileKey};
use crate::state::AppState;

pub const MVT: &str = "application/vnd.mapbox-vector-tile";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tiles/{file}", get(tilejson))
        .route("/tiles/{layer}/{z}/{x}/{y}", get(tile))
}

/// A layer: what it draws and which search parameters filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Detections,
    Transmitters,
}

impl Layer {
    fn parse(name: &str) -> ApiResult<Self> {
        match name {
            "detections" => Ok(Self::Detections),
            "transmitters" => Ok(Self::Transmitters),
            other => Err(ApiError::NotFound {
                detail: format!("no tile layer `{other}` (detections, transmitters)"),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Detections => "detections",
            Self::Transmitters => "transmitters",
        }
    }

    /// The filters, validated for this layer, and their canonical form (the query's pairs,
    /// sorted) for the cache key.
    fn filters(
        self,
        window: WindowParams,
        properties: PropertyParams,
        raw: Option<&str>,
    ) -> ApiResult<(Filters, String)> {
        let filters = params::filters(window.try_into()?, properties);
        if let Some(name) = filters
            .detection_only()
            .filter(|_| self == Self::Transmitters)
        {
            return Err(ApiError::bad_parameter(
                name,
                "filters detections, not the transmitters layer",
            ));
        }
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        let canonical = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Ok((filters, canonical))
    }

    /// TileJSON `fields` of the layer: points and aggregated cells share the layer.
    fn fields(self) -> Value {
        let cells = json!({
            "cluster": "Boolean: true on a grid cell standing for `count` points",
            "count": "Number: points in the cell",
            "wifi": "Number: wifi points in the cell",
            "bluetooth": "Number: bluetooth points in the cell",
            "ble": "Number: BLE points in the cell",
            "cellular": "Number: cellular points in the cell",
            "suspicious": "Number: suspicious points in the cell",
        });
        let mut fields = match self {
            Self::Detections => json!({
                "signal_type": "String: wifi, bluetooth, ble or cellular (of a cell: the most common)",
                "detected_at": "String: RFC 3339 UTC time of the detection",
                "identifier": "String: BSSID, Bluetooth address or mcc-mnc-lac-cell",
                "name": "String: SSID, Bluetooth name or network type",
                "signal_dbm": "Number: received signal strength",
                "device_id": "String: the capture device",
                "is_suspicious": "Boolean: flagged by the following detector",
                "score": "Number: following score of its transmitter (0-100)",
                "first_seen": "String: earliest detection in a cell",
                "last_seen": "String: latest detection in a cell",
            }),
            Self::Transmitters => json!({
                "signal_type": "String: the transmitter's radio (of a cell: the most common)",
                "identifier": "String: BSSID, Bluetooth address or mcc-mnc-lac-cell",
                "name": "String: its first name or SSID",
                "detections": "Number: detections folded into it",
                "first_seen": "String: first detection",
                "last_seen": "String: last detection",
                "vendor": "String: IEEE registry organisation",
                "tracker_class": "String: tracker type announced by its advertisements",
                "level": "String: following level (none, watch, suspicious, alert)",
                "score": "Number: highest following score (0-100)",
                "spread_m": "Number: p95 distance of its fixes from the estimate",
            }),
        };
        if let (Some(f), Some(c)) = (fields.as_object_mut(), cells.as_object()) {
            f.extend(c.clone());
        }
        fields
    }
}

fn tile_error(e: TileError) -> ApiError {
    let parameter = match e {
        TileError::Zoom => "z",
        TileError::Column | TileError::Name => "y",
    };
    ApiError::BadRequest {
        detail: e.to_string(),
        parameter: Some(parameter.into()),
    }
}

/// A strong tag of the tile's bytes: equal bytes give equal tags in every replica.
fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

fn matches_tag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Tiles may be kept by the browser but must be revalidated (a cheap 304): they change with
/// every commit in their area.
fn cache_control(state: &AppState) -> HeaderValue {
    if state.auth.anonymous_read {
        HeaderValue::from_static("public, no-cache")
    } else {
        HeaderValue::from_static("private, no-cache")
    }
}

#[utoipa::path(
    get,
    path = "/tiles/{layer}/{z}/{x}/{y}.pbf",
    tag = "maps",
    params(
        ("layer" = String, Path, description = "detections or transmitters"),
        ("z" = u8, Path, description = "Zoom, 0 to 22"),
        ("x" = u32, Path, description = "Column, 0 to 2^z - 1"),
        ("y" = u32, Path, description = "Row, 0 to 2^z - 1 (XYZ: 0 is north)"),
        WindowParams,
        PropertyParams,
    ),
    responses(
        (status = 200, description = "A Mapbox Vector Tile 2.1: points, or grid cells with counts (`cluster`) where the tile holds more than map.tile_max_points", content_type = "application/vnd.mapbox-vector-tile"),
        (status = 204, description = "Nothing there"),
        (status = 304, description = "Unchanged since the If-None-Match tag"),
        (status = 400, description = "Not a tile, or an invalid filter (named in `parameter`)", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such layer", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn tile(
    State(state): State<AppState>,
    _caller: RequireRead,
    Path((layer, z, x, y)): Path<(String, String, String, String)>,
    Query((window, properties)): Query<(WindowParams, PropertyParams)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let layer = Layer::parse(&layer)?;
    let coord = TileCoord::parse(&z, &x, &y).map_err(tile_error)?;
    let (filters, canonical) = layer.filters(window, properties, raw.as_deref())?;
    let key = TileKey {
        layer: layer.name(),
        tile: coord,
        filters: canonical,
    };
    let (cached, built) = state
        .tiles
        .get_or_build(&key, || async {
            let map = &state.settings.map;
            let shape = TileShape {
                max_points: map.tile_max_points,
                cell: store::EXTENT / map.tile_grid,
            };
            let started = Instant::now();
            let mut conn = state.read().await?;
            let (bytes, kind) = match layer {
                Layer::Detections => store::detections(&mut conn, coord, &filters, shape).await?,
                Layer::Transmitters => {
                    store::transmitters(&mut conn, coord, &filters, shape).await?
                }
            };
            drop(conn);
            let kind = match (bytes.is_empty(), kind) {
                (true, _) => "empty",
                (false, TileKind::Points) => "points",
                (false, TileKind::Cells) => "cells",
            };
            metrics::histogram!("shadowcheck_tile_build_seconds", "layer" => layer.name(), "kind" => kind)
                .record(started.elapsed().as_secs_f64());
            let tile = CachedTile {
                etag: etag(&bytes),
                gzip: if bytes.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::from(encoding::gzip(&bytes))
                },
                bytes: Bytes::from(bytes),
            };
            Ok::<_, ApiError>((tile, started, store::buffered(coord)))
        })
        .await?;
    let outcome = if built { "built" } else { "hit" };
    // Each encoding is its own representation, with its own tag.
    let gzipped = !cached.gzip.is_empty() && encoding::accepts_gzip(&headers);
    let tag = if gzipped {
        format!("{}-gz\"", cached.etag.trim_end_matches('"'))
    } else {
        cached.etag.clone()
    };
    let not_modified = matches_tag(&headers, &tag);
    metrics::counter!("shadowcheck_tiles_total", "layer" => layer.name(), "outcome" => if not_modified { "not_modified" } else { outcome })
        .increment(1);
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else if cached.bytes.is_empty() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = if status == StatusCode::OK {
        if gzipped {
            cached.gzip.into_response()
        } else {
            cached.bytes.into_response()
        }
    } else {
        status.into_response()
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    if status == StatusCode::OK {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MVT));
        if gzipped {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, cache_control(&state));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, X-API-Key, Accept-Encoding"),
    );
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/tiles/{layer}.json",
    tag = "maps",
    params(
        ("layer" = String, Path, description = "detections or transmitters"),
        WindowParams,
        PropertyParams,
    ),
    responses(
        (status = 200, description = "TileJSON 3.0: the tile URL (with these filters), bounds, zooms and the layer's fields", content_type = "application/json"),
        (status = 400, description = "Invalid filter (named in `parameter`)", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such layer", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn tilejson(
    State(state): State<AppState>,
    _caller: RequireRead,
    Origin(origin): Origin,
    Path(file): Path<String>,
    Query((window, properties)): Query<(WindowParams, PropertyParams)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let Some(name) = file.strip_suffix(".json") else {
        return Err(ApiError::NotFound {
            detail: format!("no tile document `{file}` (detections.json, transmitters.json)"),
        });
    };
    let layer = Layer::parse(name)?;
    let (_, filters) = layer.filters(window, properties, raw.as_deref())?;
    let bounds = state
        .extent
        .get_or_compute(|| async {
            let mut conn = state.read().await?;
            Ok::<_, ApiError>(store::extent(&mut conn).await?)
        })
        .await?
        .bounds;
    let [w, s, e, n] = bounds.map_or([-180.0, -MAX_LAT, 180.0, MAX_LAT], |b| {
        [
            b.min_lon,
            b.min_lat.max(-MAX_LAT),
            b.max_lon,
            b.max_lat.min(MAX_LAT),
        ]
    });
    let query = if filters.is_empty() {
        String::new()
    } else {
        format!("?{filters}")
    };
    let center_zoom = if bounds.is_some() { 12 } else { 1 };
    let doc = json!({
        "tilejson": "3.0.0",
        "name": format!("ShadowCheck {}", layer.name()),
        "description": match layer {
            Layer::Detections => "Every detection at its fix; dense tiles as grid cells with counts",
            Layer::Transmitters => "Every transmitter at its estimated position; dense tiles as grid cells with counts",
        },
        "scheme": "xyz",
        "tiles": [format!("{origin}/tiles/{}/{{z}}/{{x}}/{{y}}.pbf{query}", layer.name())],
        "minzoom": 0,
        "maxzoom": MAX_ZOOM,
        "bounds": [w, s, e, n],
        "center": [(w + e) / 2.0, (s + n) / 2.0, center_zoom],
        "vector_layers": [{
            "id": layer.name(),
            "description": "Points, or grid cells (`cluster`: true) where a tile holds too many",
            "minzoom": 0,
            "maxzoom": MAX_ZOOM,
            "fields": layer.fields(),
        }],
    });
    let mut response = Json(doc).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
