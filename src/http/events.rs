//! `GET /api/v1/threats/events`: new threats as server-sent events, for pages left open. A
//! reconnecting client sends `Last-Event-ID` (browsers do) and first gets what it missed. Each
//! key holds at most `notify.streams_per_key` streams, all keys `notify.max_streams`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::Slot;
use crate::db;
use crate::db::events::ThreatEvent;
use crate::error::{ApiError, ApiResult};
use crate::http::guard::RequireRead;
use crate::http::schema::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/threats/events", get(events))
}

/// Missed events sent on reconnection, at most.
const REPLAY: i64 = 200;

#[utoipa::path(get, path = "/api/v1/threats/events", tag = "detector",
    params(("Last-Event-ID" = Option<i64>, Header, description = "The last event this client saw: what came after it is sent first")),
    responses((status = 200, description = "Server-sent events: `threat`, one per pair that rises to suspicious or alert (`id` is the event's id, `data` its JSON: level, score, transmitter, device, tracker class, summary in words)", content_type = "text/event-stream"),
        (status = 400, description = "Last-Event-ID is not an event id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This key holds all its streams (notify.streams_per_key)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "All streams are taken (notify.max_streams)", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("api_key" = [])))]
/// New threats as they appear.
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: RequireRead,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let after = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest {
                    detail: "Last-Event-ID must be an event id (a non-negative integer)".into(),
                    parameter: Some("Last-Event-ID".into()),
                })?,
        ),
    };
    let hub = &state.notify;
    let own = hub
        .streams_per_key
        .try_enter(&caller.0)
        .ok_or_else(|| ApiError::CallerBusy {
            detail: format!(
                "this key already holds {} event stream(s) (notify.streams_per_key); close one",
                hub.streams_per_key.max()
            ),
            retry_after_secs: 30,
        })?;
    let turn = Arc::clone(&hub.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            detail: "every event stream is taken (notify.max_streams); retry shortly".into(),
            retry_after_secs: 30,
        })?;
    // Subscribed before the replay is read: nothing falls between the two.
    let live = hub.subscribe();
    let mut conn = state.read().await?;
    let last = match after {
        Some(id) => id,
        None => db::events::newest(&mut conn).await?,
    };
    let missed = match after {
        Some(id) => db::events::after(&mut conn, id, REPLAY).await?,
        None => Vec::new(),
    };
    drop(conn);
    let stream = Stream {
        pending: missed.into(),
        last,
        live,
        pool: state.database()?.clone(),
        shutdown: state.lifecycle.shutdown_token(),
        _turns: (own, turn),
    };
    let body = futures_util::stream::unfold(stream, Stream::next);
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // nginx (the compose stack's edge) would otherwise hold the events in its buffer.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One open stream: events to send, the last id sent, the live feed, and its turns (held until
/// the client goes).
struct Stream {
    pending: VecDeque<ThreatEvent>,
    last: i64,
    live: broadcast::Receiver<Arc<ThreatEvent>>,
    pool: db::Pool,
    shutdown: CancellationToken,
    _turns: (Slot, tokio::sync::OwnedSemaphorePermit),
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                // In id order; the replay and the live feed may both hold an event.
                if e.id <= self.last {
                    continue;
                }
                self.last = e.id;
                let event = Event::default()
                    .id(e.id.to_string())
                    .event("threat")
                    .json_data(&e)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
                return Some((Ok(event), self));
            }
            let received = tokio::select! {
                r = self.live.recv() => r,
                () = self.shutdown.cancelled() => return None,
            };
            match received {
                Ok(e) => self.pending.push_back((*e).clone()),
                // Fallen behind the feed: read what was missed from the database.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let mut conn = self.pool.acquire().await.ok()?;
                    let missed = db::events::after(&mut conn, self.last, REPLAY).await.ok()?;
                    self.pending.extend(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
