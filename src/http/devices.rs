//! `/api/v1/devices`: capture devices as a resource (read scope to list and read; operator
//! scope to register, describe and remove). A detection's `device_id` may name one; a fixed
//! sensor's rows without their own fix are stored at its position.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::db::devices as store;
use crate::domain::device::{DeviceKind, DeviceName, DeviceNote, DeviceSpec, FixedPosition};
use crate::domain::Position;
use crate::error::{ApiError, ApiResult};
use crate::http::body::{bad_body, json_body};
use crate::http::geojson;
use crate::http::guard::{RequireOperator, RequireRead};
use crate::http::query::{self, Query, QueryPart};
use crate::http::schema::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices", get(list).post(create))
        .route(
            "/api/v1/devices/{id}",
            get(read).put(replace).delete(remove),
        )
}

/// `GET /api/v1/devices` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DevicePage {
    /// 1..=query.max_limit (default query.default_limit).
    limit: Option<u32>,
    /// Keyset cursor from the `next` link: a device id.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    after: Option<Uuid>,
}

impl QueryPart for DevicePage {}

/// A device as written by a client.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceInput {
    /// Only on POST (optional there: a new id is made); a PUT names it in the path.
    id: Option<Uuid>,
    name: String,
    kind: String,
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy_m: Option<f64>,
    note: Option<String>,
}

impl DeviceInput {
    fn spec(self) -> ApiResult<DeviceSpec> {
        let name: DeviceName = self.name.parse().map_err(|why| bad_body("name", why))?;
        let kind: DeviceKind = self.kind.parse().map_err(|why| bad_body("kind", why))?;
        let fixed = match (self.latitude, self.longitude, self.accuracy_m) {
            (None, None, None) => None,
            (Some(lat), Some(lon), Some(accuracy)) => {
                let position =
                    Position::new(lat, lon).map_err(|e| bad_body("latitude", e.to_string()))?;
                // (0, 0) is where a missing GPS fix lands, never a sensor.
                if lat == 0.0 && lon == 0.0 {
                    return Err(bad_body("latitude", "0,0 is a missing fix, not a position"));
                }
                Some(
                    FixedPosition::new(position, accuracy)
                        .map_err(|why| bad_body("accuracy_m", why))?,
                )
            }
            _ => {
                return Err(bad_body(
                    "latitude",
                    "a position is latitude, longitude and accuracy_m together",
                ))
            }
        };
        let note = self
            .note
            .map(|n| n.parse::<DeviceNote>())
            .transpose()
            .map_err(|why| bad_body("note", why))?;
        DeviceSpec::new(name, kind, fixed, note).map_err(|why| bad_body("kind", why))
    }
}

fn device_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse().map_err(|_| ApiError::BadRequest {
        detail: "a device id is a UUID".into(),
        parameter: Some("id".into()),
    })
}

async fn stored(state: &AppState, id: Uuid) -> ApiResult<store::Device> {
    let mut conn = state.acquire().await?;
    store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no capture device {id}"),
        })
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DevicePage),
    responses((status = 200, description = "Registered capture devices in id order: {devices, next}"),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: RequireRead,
    Query(page): Query<DevicePage>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let limit = i64::from(query::page_size(page.limit, q.default_limit, q.max_limit)?);
    let mut conn = state.acquire().await?;
    let mut devices = store::list(&mut conn, page.after, limit + 1).await?;
    let has_more = devices.len() as i64 > limit;
    devices.truncate(limit as usize);
    let next = devices
        .last()
        .filter(|_| has_more)
        .map(|d| geojson::next_href("/api/v1/devices", raw.as_deref(), &d.id.to_string()));
    Ok(Json(json!({ "devices": devices, "next": next })).into_response())
}

#[utoipa::path(post, path = "/api/v1/devices", tag = "devices",
    request_body(content = String, description = r#"{"name": "shelf", "kind": "fixed_sensor", "latitude": 52.52, "longitude": 13.40, "accuracy_m": 5} (kind: phone, kismet_rig, esp32, stumbler, fixed_sensor; only a fixed_sensor has a position; optional "id" UUID, "note")"#, content_type = "application/json"),
    responses((status = 201, description = "Registered", body = store::Device),
        (status = 400, description = "Invalid device", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is registered already (PUT replaces)", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: RequireOperator,
    body: Bytes,
) -> ApiResult<Response> {
    let input: DeviceInput = json_body(&body)?;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    let spec = input.spec()?;
    let mut tx = state.begin().await?;
    if store::get(&mut tx, id).await?.is_some() {
        return Err(ApiError::Conflict {
            detail: format!("capture device {id} is registered already; PUT replaces it"),
        });
    }
    store::put(&mut tx, id, &spec, &caller.0.name).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(stored(&state, id).await?)).into_response())
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device's UUID")),
    responses((status = 200, description = "The device", body = store::Device),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not registered", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    _caller: RequireRead,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = device_id(&id)?;
    Ok(Json(stored(&state, id).await?).into_response())
}

#[utoipa::path(put, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device's UUID (the device_id its detections carry)")),
    request_body(content = String, description = r#"{"name": "shelf", "kind": "fixed_sensor", "latitude": 52.52, "longitude": 13.40, "accuracy_m": 5}"#, content_type = "application/json"),
    responses((status = 201, description = "Registered", body = store::Device),
        (status = 200, description = "Replaced", body = store::Device),
        (status = 400, description = "Invalid device", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// Registers or replaces a device: rows stored from now on use its description (a fixed
/// sensor's position is given at ingest, not to rows stored before).
pub(crate) async fn replace(
    State(state): State<AppState>,
    caller: RequireOperator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = device_id(&id)?;
    let input: DeviceInput = json_body(&body)?;
    if input.id.is_some_and(|given| given != id) {
        return Err(bad_body("id", "differs from the id in the path"));
    }
    let spec = input.spec()?;
    let mut tx = state.begin().await?;
    let new = store::put(&mut tx, id, &spec, &caller.0.name).await?;
    tx.commit().await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored(&state, id).await?)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device's UUID")),
    responses((status = 204, description = "Removed (its detections stay)"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not registered", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    _caller: RequireOperator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = device_id(&id)?;
    let mut conn = state.acquire().await?;
    if !store::delete(&mut conn, id).await? {
        return Err(ApiError::NotFound {
            detail: format!("no capture device {id}"),
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
