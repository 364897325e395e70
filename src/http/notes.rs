//! `/api/v1/transmitters/{radio}/{identifier}/note`: a person's note on a transmitter ("the
//! neighbour's car") and whether to watch it (kept on the threats list whatever its level).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;

use crate::db::notes as store;
use crate::error::{ApiError, ApiResult};
use crate::http::body::{bad_body, json_body};
use crate::http::guard::RequireOperator;
use crate::http::path::TransmitterPath;
use crate::http::schema::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/transmitters/{radio}/{identifier}/note",
        put(replace).delete(remove),
    )
}

/// The longest note, in characters.
const MAX_NOTE_CHARS: usize = 1000;

/// A note: free text (may span lines), and whether to watch the transmitter.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    #[schema(max_length = 1000)]
    note: Option<String>,
    #[serde(default)]
    watched: bool,
}

impl NoteInput {
    /// The note's text: trimmed, empty as none; control characters other than line breaks
    /// and tabs refused.
    fn text(&self) -> ApiResult<Option<&str>> {
        let Some(text) = self
            .note
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        if text.chars().count() > MAX_NOTE_CHARS {
            return Err(bad_body("note", "at most 1000 characters"));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(bad_body("note", "must not hold control characters"));
        }
        Ok(Some(text))
    }
}

#[utoipa::path(put, path = "/api/v1/transmitters/{radio}/{identifier}/note", tag = "transmitters",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple")),
    request_body = NoteInput,
    responses((status = 200, description = "The note as stored", body = crate::db::notes::Note),
        (status = 400, description = "Not a transmitter, or a bad note", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator scope", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// Sets the note on a transmitter (replacing any), and whether to watch it.
pub(crate) async fn replace(
    State(state): State<AppState>,
    caller: RequireOperator,
    TransmitterPath(key): TransmitterPath,
    body: Bytes,
) -> ApiResult<Response> {
    let input: NoteInput = json_body(&body)?;
    let text = input.text()?;
    let mut tx = state.begin().await?;
    let note = store::put(&mut tx, &key, text, input.watched, &caller.0.name).await?;
    tx.commit().await?;
    Ok(Json(note).into_response())
}

#[utoipa::path(delete, path = "/api/v1/transmitters/{radio}/{identifier}/note", tag = "transmitters",
    params(("radio" = String, Path, description = "wifi, bluetooth, ble or cellular"),
        ("identifier" = String, Path, description = "MAC address or cell tuple")),
    responses((status = 204, description = "Removed (and no longer watched)"),
        (status = 400, description = "Not a transmitter identifier", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the operator scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No note on it", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// Removes the note on a transmitter.
pub(crate) async fn remove(
    State(state): State<AppState>,
    _caller: RequireOperator,
    TransmitterPath(key): TransmitterPath,
) -> ApiResult<Response> {
    let mut tx = state.begin().await?;
    if !store::delete(&mut tx, &key).await? {
        return Err(ApiError::NotFound {
            detail: format!("no note on {} {}", key.radio, key.identifier),
        });
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
