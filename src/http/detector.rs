//! The following detector's API: `/api/v1/threats` (scored pairs at or above a level, with
//! their explanations), the allow-list and the safe zones (read scope to list; ingest or admin
//! scope to change).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::following::{self as store, ScoreRow};
use crate::domain::following::{Level, Zone};
use crate::domain::registry::TransmitterKey;
use crate::domain::Position;
use crate::error::{ApiError, ApiResult};
use crate::http::guard::{RequireIngest, RequireRead};
use crate::http::openapi::Problem;
use crate::http::params;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/threats", get(threats))
        .route("/api/v1/allowlist", get(allowlist_list).post(allowlist_add))
        .route(
            "/api/v1/allowlist/{radio}/{identifier}",
            delete(allowlist_remove),
        )
        .route("/api/v1/safe-zones", get(zones_list).post(zones_add))
        .route("/api/v1/safe-zones/{id}", delete(zones_remove))
}

fn bad_body(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        detail: format!("`{field}`: {}", why.into()),
        parameter: Some(field.to_owned()),
    }
}

/// A JSON object body, or a 400 that says what is wrong with it.
fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        detail: format!("the body must be a JSON object as documented: {e}"),
        parameter: None,
    })
}

fn text_field(field: &str, value: Option<&str>, required: bool) -> ApiResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") if required => Err(bad_body(field, "required")),
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > 200 || v.chars().any(char::is_control) => {
            Err(bad_body(field, "at most 200 printable characters"))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn cursor_of(row: &ScoreRow) -> String {
    format!(
        "{},{},{},{}",
        row.together_to
            .unwrap_or(row.computed_at)
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        row.device_id,
        row.radio,
        row.identifier
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/threats",
    tag = "detector",
    params(
        ("level" = Option<String>, Query, description = "At or above: watch, suspicious (default) or alert"),
        ("device_id" = Option<String>, Query, description = "Followers of this capture device only"),
        ("limit" = Option<u32>, Query, description = "1..=query.max_limit"),
        ("after" = Option<String>, Query, description = "Keyset cursor from the `next` link"),
    ),
    responses(
        (status = 200, description = "Scored (transmitter, capture device) pairs, most recently together first, each with its explanation"),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// `GET /api/v1/threats`: who is following which capture device, and why.
pub(crate) async fn threats(
    State(state): State<AppState>,
    _caller: RequireRead,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let p = params::read(raw.as_deref(), &["level", "device_id", "limit", "after"])?;
    let level = match p.get("level").map(|l| l.trim()) {
        None => Level::Suspicious,
        Some(l) => Level::parse(l)
            .filter(|l| *l > Level::None)
            .ok_or_else(|| {
                ApiError::bad_parameter("level", "must be watch, suspicious or alert")
            })?,
    };
    let levels: Vec<&str> = Level::ALL
        .into_iter()
        .filter(|l| *l >= level)
        .map(Level::as_str)
        .collect();
    let device = p
        .get("device_id")
        .map(|d| {
            d.trim()
                .parse()
                .map_err(|_| ApiError::bad_parameter("device_id", "must be a UUID"))
        })
        .transpose()?;
    let q = &state.settings.query;
    let limit = params::limit(&p, q.default_limit, q.max_limit)?;
    let after = match p.get("after") {
        None => None,
        Some(a) => {
            let invalid =
                || ApiError::bad_parameter("after", "must be the cursor of a `next` link");
            let parts: Vec<&str> = a.splitn(4, ',').collect();
            let [at, device, radio, identifier] = parts.as_slice() else {
                return Err(invalid());
            };
            Some((
                DateTime::parse_from_rfc3339(at)
                    .map_err(|_| invalid())?
                    .with_timezone(&Utc),
                TransmitterKey::parse(radio, identifier).map_err(|_| invalid())?,
                device.parse().map_err(|_| invalid())?,
            ))
        }
    };
    let mut conn = state.read().await?;
    let mut rows = store::threats(
        &mut conn,
        &levels,
        device,
        after.as_ref().map(|(t, k, d)| (*t, k.clone(), *d)).as_ref(),
        limit,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows
        .last()
        .filter(|_| has_more)
        .map(|r| params::next_href("/api/v1/threats", raw.as_deref(), &cursor_of(r)));
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
            v["transmitter"] = json!(format!("/api/v1/transmitters/{}/{}", r.radio, r.identifier));
            v
        })
        .collect();
    Ok(Json(json!({"level": level, "threats": items, "next": next})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowInput {
    radio: String,
    identifier: String,
    note: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/allowlist", tag = "detector",
    responses((status = 200, description = "Allow-listed transmitters (never above `none`)"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_list(
    State(state): State<AppState>,
    _caller: RequireRead,
) -> ApiResult<Response> {
    let mut conn = state.acquire().await?;
    let items = store::allowlist(&mut conn).await?;
    Ok(Json(json!({"allowlist": items})).into_response())
}

#[utoipa::path(post, path = "/api/v1/allowlist", tag = "detector",
    request_body(content = String, description = r#"{"radio": "ble", "identifier": "<address>", "note": "my phone"}"#, content_type = "application/json"),
    responses((status = 201, description = "Added; its pairs are rescored"),
        (status = 200, description = "Already there; note updated"),
        (status = 400, description = "Not a transmitter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the ingest or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_add(
    State(state): State<AppState>,
    _caller: RequireIngest,
    body: Bytes,
) -> ApiResult<Response> {
    let input: AllowInput = json_body(&body)?;
    let key = TransmitterKey::parse(&input.radio, &input.identifier)
        .map_err(|why| bad_body("identifier", why))?;
    let note = text_field("note", input.note.as_deref(), false)?;
    let mut tx = state.begin().await?;
    let (entry, new) = store::allow(&mut tx, &key, note.as_deref()).await?;
    tx.commit().await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/allowlist/{radio}/{identifier}", tag = "detector",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple")),
    responses((status = 204, description = "Removed; its pairs are rescored"),
        (status = 400, description = "Not a transmitter identifier", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not allow-listed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the ingest or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_remove(
    State(state): State<AppState>,
    _caller: RequireIngest,
    Path((radio, identifier)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key = TransmitterKey::parse(&radio, &identifier).map_err(|why| ApiError::BadRequest {
        detail: why,
        parameter: Some("identifier".into()),
    })?;
    let mut tx = state.begin().await?;
    if !store::disallow(&mut tx, &key).await? {
        return Err(ApiError::NotFound {
            detail: format!("{} {} is not allow-listed", key.radio, key.identifier),
        });
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A safe zone as the API shows it.
fn zone_json(z: &Zone) -> Value {
    json!({"id": z.id, "name": z.name, "latitude": z.lat, "longitude": z.lon, "radius_m": z.radius_m})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneInput {
    name: String,
    latitude: f64,
    longitude: f64,
    radius_m: f64,
}

#[utoipa::path(get, path = "/api/v1/safe-zones", tag = "detector",
    responses((status = 200, description = "Safe zones: places (home, office) kept as evidence, never counted as distinct places"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_list(
    State(state): State<AppState>,
    _caller: RequireRead,
) -> ApiResult<Response> {
    let mut conn = state.acquire().await?;
    let zones = store::zones(&mut conn).await?;
    Ok(
        Json(json!({"safe_zones": zones.iter().map(zone_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}

#[utoipa::path(post, path = "/api/v1/safe-zones", tag = "detector",
    request_body(content = String, description = r#"{"name": "home", "latitude": 52.52, "longitude": 13.40, "radius_m": 200}"#, content_type = "application/json"),
    responses((status = 201, description = "Created; scored pairs are rescored"),
        (status = 400, description = "Invalid zone", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the ingest or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_add(
    State(state): State<AppState>,
    _caller: RequireIngest,
    body: Bytes,
) -> ApiResult<Response> {
    let input: ZoneInput = json_body(&body)?;
    let name = text_field("name", Some(&input.name), true)?.unwrap_or_default();
    Position::new(input.latitude, input.longitude)
        .map_err(|e| bad_body("latitude", e.to_string()))?;
    if !(input.radius_m.is_finite() && (1.0..=5_000.0).contains(&input.radius_m)) {
        return Err(bad_body("radius_m", "must be 1 to 5000 metres"));
    }
    let mut tx = state.begin().await?;
    let z = store::add_zone(
        &mut tx,
        &name,
        input.latitude,
        input.longitude,
        input.radius_m,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(zone_json(&z))).into_response())
}

#[utoipa::path(delete, path = "/api/v1/safe-zones/{id}", tag = "detector",
    params(("id" = i64, Path, description = "Zone id")),
    responses((status = 204, description = "Removed; pairs with places in it are rescored"),
        (status = 400, description = "Not a zone id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such zone", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the ingest or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_remove(
    State(state): State<AppState>,
    _caller: RequireIngest,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest {
        detail: "a safe zone id is an integer".into(),
        parameter: Some("id".into()),
    })?;
    let mut tx = state.begin().await?;
    if !store::remove_zone(&mut tx, id).await? {
        return Err(ApiError::NotFound {
            detail: format!("no safe zone {id}"),
        });
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
