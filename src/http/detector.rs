//! The following detector's API: `/api/v1/threats` (scored pairs at or above a level, with
//! their explanations), the allow-list and the safe zones (read scope to list; the operator
//! scope to add and to remove its own entries, admin to remove any).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Scope;
use crate::db::following::{self as store, ScoreRow};
use crate::domain::following::Level;
use crate::domain::registry::TransmitterKey;
use crate::domain::Position;
use crate::error::{ApiError, ApiResult};
use crate::http::body::{bad_body, json_body};
use crate::http::geojson;
use crate::http::guard::{RequireOperator, RequireRead};
use crate::http::path::{PairPath, TransmitterPath};
use crate::http::query::{self, Query, QueryPart};
use crate::http::schema::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/threats", get(threats))
        .route(
            "/api/v1/threats/{radio}/{identifier}/{device_id}",
            get(threat),
        )
        .route(
            "/api/v1/threats/{radio}/{identifier}/{device_id}/feedback",
            put(feedback_give).delete(feedback_withdraw),
        )
        .route("/api/v1/allowlist", get(allowlist_list).post(allowlist_add))
        .route(
            "/api/v1/allowlist/{radio}/{identifier}",
            delete(allowlist_remove),
        )
        .route("/api/v1/safe-zones", get(zones_list).post(zones_add))
        .route("/api/v1/safe-zones/{id}", delete(zones_remove))
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

/// `GET /api/v1/threats` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreatParams {
    /// At or above: watch, suspicious (default) or alert.
    #[param(value_type = Option<String>)]
    level: Option<Level>,
    /// Followers of this capture device only.
    device_id: Option<Uuid>,
    /// 1..=query.max_limit (default query.default_limit).
    limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    after: Option<ThreatCursor>,
}

impl QueryPart for ThreatParams {}

/// After this pair: `at,device,radio,identifier`.
#[derive(Debug)]
struct ThreatCursor {
    at: DateTime<Utc>,
    device: Uuid,
    key: TransmitterKey,
}

impl std::str::FromStr for ThreatCursor {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const INVALID: &str = "must be the cursor of a `next` link";
        let parts: Vec<&str> = s.splitn(4, ',').collect();
        let [at, device, radio, identifier] = parts.as_slice() else {
            return Err(INVALID);
        };
        Ok(Self {
            at: DateTime::parse_from_rfc3339(at)
                .map_err(|_| INVALID)?
                .with_timezone(&Utc),
            device: device.parse().map_err(|_| INVALID)?,
            key: TransmitterKey::parse(radio, identifier).map_err(|_| INVALID)?,
        })
    }
}

/// `GET /api/v1/allowlist` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllowlistPage {
    /// 1..=query.max_limit (default query.default_limit).
    limit: Option<u32>,
    /// Keyset cursor from the `next` link.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    after: Option<AllowlistCursor>,
}

impl QueryPart for AllowlistPage {}

/// After this entry: `at,radio,identifier`.
#[derive(Debug)]
struct AllowlistCursor {
    at: DateTime<Utc>,
    key: TransmitterKey,
}

impl std::str::FromStr for AllowlistCursor {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const INVALID: &str = "must be the cursor of a `next` link";
        let (at, rest) = s.split_once(',').ok_or(INVALID)?;
        let (radio, identifier) = rest.split_once(',').ok_or(INVALID)?;
        Ok(Self {
            at: DateTime::parse_from_rfc3339(at)
                .map_err(|_| INVALID)?
                .with_timezone(&Utc),
            key: TransmitterKey::parse(radio, identifier).map_err(|_| INVALID)?,
        })
    }
}

/// `GET /api/v1/safe-zones` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ZonePage {
    /// 1..=query.max_limit (default query.default_limit).
    limit: Option<u32>,
    /// Keyset cursor from the `next` link: a zone id.
    after: Option<i64>,
}

impl QueryPart for ZonePage {}

#[utoipa::path(
    get,
    path = "/api/v1/threats",
    tag = "detector",
    params(ThreatParams),
    responses(
        (status = 200, description = "Scored (transmitter, capture device) pairs at or above the level, and every pair of a watched transmitter, most recently together first, each with its explanation, the explanation in words (`summary`) and the transmitter's note"),
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
    Query(params): Query<ThreatParams>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let level = match params.level {
        None => Level::Suspicious,
        Some(Level::None) => {
            return Err(ApiError::bad_parameter(
                "level",
                "must be watch, suspicious or alert",
            ))
        }
        Some(l) => l,
    };
    let levels: Vec<&str> = Level::ALL
        .into_iter()
        .filter(|l| *l >= level)
        .map(Level::as_str)
        .collect();
    let device = params.device_id;
    let q = &state.settings.query;
    let limit = i64::from(query::page_size(
        params.limit,
        q.default_limit,
        q.max_limit,
    )?);
    let after = params.after.map(|c| (c.at, c.key, c.device));
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
        .map(|r| geojson::next_href("/api/v1/threats", raw.as_deref(), &cursor_of(r)));
    let items: Vec<Value> = rows.iter().map(threat_item).collect();
    Ok(Json(json!({"level": level, "threats": items, "next": next})).into_response())
}

/// A threat as the API shows it: the scored pair, its transmitter's link, and the explanation
/// in words.
fn threat_item(r: &ScoreRow) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    v["transmitter"] = json!(format!("/api/v1/transmitters/{}/{}", r.radio, r.identifier));
    v["summary"] = json!(crate::domain::following::words::summary(&r.explanation));
    v
}

#[utoipa::path(get, path = "/api/v1/threats/{radio}/{identifier}/{device_id}", tag = "detector",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple"),
        ("device_id" = String, Path, description = "The capture device it was scored with")),
    responses((status = 200, description = "The pair's score whatever its level, with its explanation, the explanation in words and the transmitter's note"),
        (status = 400, description = "Not a transmitter or a device", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This pair was never scored", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// One (transmitter, capture device) pair, for its report.
pub(crate) async fn threat(
    State(state): State<AppState>,
    _caller: RequireRead,
    PairPath { key, device }: PairPath,
) -> ApiResult<Response> {
    let mut conn = state.read().await?;
    let row = store::pair(&mut conn, &key, device)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            detail: format!(
                "{} {} was never scored with capture device {device}",
                key.radio, key.identifier
            ),
        })?;
    Ok(Json(threat_item(&row)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowInput {
    radio: String,
    identifier: String,
    note: Option<String>,
}

/// What a caller may not remove, in words.
fn not_yours(what: &str, made_by: Option<String>) -> ApiError {
    ApiError::Forbidden {
        detail: match made_by {
            Some(name) => format!(
                "{what} was made by the key `{name}`; only it or an admin key may remove it"
            ),
            None => format!("{what} predates ownership; only an admin key may remove it"),
        },
    }
}

fn full(what: &str) -> ApiError {
    ApiError::Conflict {
        detail: format!(
            "the {what} holds {} entries, its maximum; remove some first",
            store::MAX_ENTRIES
        ),
    }
}

#[utoipa::path(get, path = "/api/v1/allowlist", tag = "detector",
    params(AllowlistPage),
    responses((status = 200, description = "Allow-listed transmitters (never above `none`), newest first, with the key that made each"),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_list(
    State(state): State<AppState>,
    _caller: RequireRead,
    Query(page): Query<AllowlistPage>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let limit = i64::from(query::page_size(page.limit, q.default_limit, q.max_limit)?);
    let after = page.after.map(|c| (c.at, c.key));
    let mut conn = state.acquire().await?;
    let mut items = store::allowlist(&mut conn, limit, after.as_ref()).await?;
    let has_more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = items.last().filter(|_| has_more).map(|a| {
        let cursor = format!(
            "{},{},{}",
            a.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            a.radio,
            a.identifier
        );
        geojson::next_href("/api/v1/allowlist", raw.as_deref(), &cursor)
    });
    Ok(Json(json!({"allowlist": items, "next": next})).into_response())
}

#[utoipa::path(post, path = "/api/v1/allowlist", tag = "detector",
    request_body(content = String, description = r#"{"radio": "ble", "identifier": "<address>", "note": "my phone"}"#, content_type = "application/json"),
    responses((status = 201, description = "Added; its pairs are rescored"),
        (status = 200, description = "This key's own entry; note updated"),
        (status = 400, description = "Not a transmitter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Allow-listed by another key already, or the list is full", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_add(
    State(state): State<AppState>,
    caller: RequireOperator,
    body: Bytes,
) -> ApiResult<Response> {
    let input: AllowInput = json_body(&body)?;
    let key = TransmitterKey::parse(&input.radio, &input.identifier)
        .map_err(|why| bad_body("identifier", why))?;
    let note = text_field("note", input.note.as_deref(), false)?;
    let mut tx = state.begin().await?;
    let outcome = store::allow(&mut tx, &key, note.as_deref(), &caller.0.name).await?;
    let (status, entry) = match outcome {
        store::Allowing::Added(entry) => (StatusCode::CREATED, entry),
        store::Allowing::Renoted(entry) => (StatusCode::OK, entry),
        store::Allowing::Taken(by) => {
            return Err(ApiError::Conflict {
                detail: format!(
                    "{} {} is allow-listed already, by {}",
                    key.radio,
                    key.identifier,
                    by.map_or_else(|| "an older entry".to_owned(), |n| format!("the key `{n}`"))
                ),
            })
        }
        store::Allowing::Full => return Err(full("allow-list")),
    };
    tx.commit().await?;
    Ok((status, Json(entry)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/allowlist/{radio}/{identifier}", tag = "detector",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple")),
    responses((status = 204, description = "Removed; its pairs are rescored"),
        (status = 400, description = "Not a transmitter identifier", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator scope and to be the key that made the entry, or the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not allow-listed", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn allowlist_remove(
    State(state): State<AppState>,
    caller: RequireOperator,
    TransmitterPath(key): TransmitterPath,
) -> ApiResult<Response> {
    let admin = caller.0.scopes.contains(&Scope::Admin);
    let mut tx = state.begin().await?;
    match store::disallow(&mut tx, &key, &caller.0.name, admin).await? {
        store::Removal::Removed => {}
        store::Removal::NotFound => {
            return Err(ApiError::NotFound {
                detail: format!("{} {} is not allow-listed", key.radio, key.identifier),
            })
        }
        store::Removal::NotYours(by) => {
            return Err(not_yours(
                &format!("the entry for {} {}", key.radio, key.identifier),
                by,
            ))
        }
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackInput {
    verdict: String,
    note: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/threats/{radio}/{identifier}/{device_id}/feedback", tag = "detector",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple"),
        ("device_id" = String, Path, description = "The capture device it was scored with")),
    request_body(content = String, description = r#"{"verdict": "false_alarm" | "confirmed", "note": "the neighbour's car"}"#, content_type = "application/json"),
    responses((status = 200, description = "Recorded; the pair is rescored (a false alarm stays below `suspicious`)"),
        (status = 400, description = "Not a verdict, a transmitter or a device", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// An operator's verdict on a threat: `false_alarm` or `confirmed` ("this is mine" is the
/// allow-list). Shown in the explanation, counted in the precision metric.
pub(crate) async fn feedback_give(
    State(state): State<AppState>,
    caller: RequireOperator,
    PairPath { key, device }: PairPath,
    body: Bytes,
) -> ApiResult<Response> {
    let input: FeedbackInput = json_body(&body)?;
    if !matches!(input.verdict.as_str(), "false_alarm" | "confirmed") {
        return Err(bad_body(
            "verdict",
            "must be false_alarm or confirmed (\"this is mine\" is the allow-list)",
        ));
    }
    let note = text_field("note", input.note.as_deref(), false)?;
    let mut tx = state.begin().await?;
    let fb = store::give_feedback(
        &mut tx,
        &key,
        device,
        &input.verdict,
        note.as_deref(),
        &caller.0.name,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(fb).into_response())
}

#[utoipa::path(delete, path = "/api/v1/threats/{radio}/{identifier}/{device_id}/feedback", tag = "detector",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple"),
        ("device_id" = String, Path, description = "The capture device")),
    responses((status = 204, description = "Withdrawn; the pair is rescored"),
        (status = 400, description = "Not a transmitter or a device", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Given by another key (admins may withdraw any)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No verdict on this pair", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn feedback_withdraw(
    State(state): State<AppState>,
    caller: RequireOperator,
    PairPath { key, device }: PairPath,
) -> ApiResult<Response> {
    let admin = caller.0.scopes.contains(&Scope::Admin);
    let mut tx = state.begin().await?;
    match store::withdraw_feedback(&mut tx, &key, device, &caller.0.name, admin).await? {
        store::Removal::Removed => {}
        store::Removal::NotFound => {
            return Err(ApiError::NotFound {
                detail: format!(
                    "no verdict on {} {} with {device}",
                    key.radio, key.identifier
                ),
            })
        }
        store::Removal::NotYours(by) => {
            return Err(not_yours(
                &format!("the verdict on {} {}", key.radio, key.identifier),
                by,
            ))
        }
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A safe zone as the API shows it.
fn zone_json(z: &store::OwnedZone) -> Value {
    let zone = &z.zone;
    json!({"id": zone.id, "name": zone.name, "latitude": zone.lat, "longitude": zone.lon,
           "radius_m": zone.radius_m, "created_by": z.created_by})
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
    params(ZonePage),
    responses((status = 200, description = "Safe zones by id: places (home, office) kept as evidence, never counted as distinct places"),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_list(
    State(state): State<AppState>,
    _caller: RequireRead,
    Query(page): Query<ZonePage>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = &state.settings.query;
    let limit = i64::from(query::page_size(page.limit, q.default_limit, q.max_limit)?);
    let after = page.after;
    let mut conn = state.acquire().await?;
    let mut zones = store::zones(&mut conn, limit, after).await?;
    let has_more = zones.len() as i64 > limit;
    zones.truncate(limit as usize);
    let next = zones
        .last()
        .filter(|_| has_more)
        .map(|z| geojson::next_href("/api/v1/safe-zones", raw.as_deref(), &z.zone.id.to_string()));
    Ok(Json(json!({
        "safe_zones": zones.iter().map(zone_json).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

#[utoipa::path(post, path = "/api/v1/safe-zones", tag = "detector",
    request_body(content = String, description = r#"{"name": "home", "latitude": 52.52, "longitude": 13.40, "radius_m": 200}"#, content_type = "application/json"),
    responses((status = 201, description = "Created; scored pairs are rescored"),
        (status = 400, description = "Invalid zone", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator or admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The zones are full", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_add(
    State(state): State<AppState>,
    caller: RequireOperator,
    body: Bytes,
) -> ApiResult<Response> {
    let input: ZoneInput = json_body(&body)?;
    let name = text_field("name", Some(&input.name), true)?.unwrap_or_default();
    let position = Position::new(input.latitude, input.longitude)
        .map_err(|e| bad_body("latitude", e.to_string()))?;
    // (0, 0) is where a missing GPS fix lands, never a home.
    if position.is_null_island() {
        return Err(bad_body(
            "latitude",
            "0,0 is a missing GPS fix, not a place; give the zone's real position",
        ));
    }
    if !(input.radius_m.is_finite() && (1.0..=5_000.0).contains(&input.radius_m)) {
        return Err(bad_body("radius_m", "must be 1 to 5000 metres"));
    }
    let mut tx = state.begin().await?;
    let Some(zone) = store::add_zone(
        &mut tx,
        &name,
        input.latitude,
        input.longitude,
        input.radius_m,
        &caller.0.name,
    )
    .await?
    else {
        return Err(full("safe zones"));
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(zone_json(&zone))).into_response())
}

#[utoipa::path(delete, path = "/api/v1/safe-zones/{id}", tag = "detector",
    params(("id" = i64, Path, description = "Zone id")),
    responses((status = 204, description = "Removed; pairs with places in it are rescored"),
        (status = 400, description = "Not a zone id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator scope and to be the key that made the zone, or the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such zone", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
pub(crate) async fn zones_remove(
    State(state): State<AppState>,
    caller: RequireOperator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest {
        detail: "a safe zone id is an integer".into(),
        parameter: Some("id".into()),
    })?;
    let admin = caller.0.scopes.contains(&Scope::Admin);
    let mut tx = state.begin().await?;
    match store::remove_zone(&mut tx, id, &caller.0.name, admin).await? {
        store::Removal::Removed => {}
        store::Removal::NotFound => {
            return Err(ApiError::NotFound {
                detail: format!("no safe zone {id}"),
            })
        }
        store::Removal::NotYours(by) => return Err(not_yours(&format!("safe zone {id}"), by)),
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
