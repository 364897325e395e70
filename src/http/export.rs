//! Streamed exports of a detection search (`GET /api/v1/detections?f=...` or by `Accept`):
//! rows are read from the database one at a time, encoded (`formats::export`) and sent in
//! chunks through a small channel, so memory stays flat however many rows match and a slow
//! reader slows the query down rather than filling memory.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::db::detections::{self as store, DetectionRow};
use crate::domain::search::DetectionSearch;
use crate::error::{ApiError, ApiResult};
use crate::formats::export::{Encoder, ExportFormat, ExportRow};
use crate::http::guard::RequireRead;
use crate::state::AppState;

/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the query and the socket.
const IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// Starts the export and answers at once with its headers; the body follows as rows arrive.
/// A failure after the first byte (the database gone, the statement timeout) aborts the body,
/// so the client sees a broken transfer, never a silently short file.
pub async fn respond(
    state: &AppState,
    caller: RequireRead,
    format: ExportFormat,
    search: DetectionSearch,
) -> ApiResult<Response> {
    let own_turn = state
        .exports_per_key
        .try_enter(&caller.0)
        .ok_or_else(|| ApiError::CallerBusy {
            detail: format!(
                "this key already runs {} export(s) at once (query.max_exports_per_key); retry when it ends",
                state.exports_per_key.max()
            ),
            retry_after_secs: 5,
        })?;
    let turn = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            detail: format!(
                "{} exports are already running (query.max_concurrent_exports); retry shortly",
                state.settings.query.max_concurrent_exports
            ),
            retry_after_secs: 5,
        })?;
    let mut conn = state.read().await?;
    let timeout = Duration::from_secs(state.settings.query.export_timeout_secs);
    let (tx, rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    tokio::spawn(async move {
        // The caller's request slot and the export turn last as long as the export.
        let _held = (caller, own_turn, turn);
        let started = Instant::now();
        let mut encoder = Encoder::new(format);
        let mut buf = Vec::with_capacity(CHUNK + 8 * 1024);
        let mut failure: Option<String> = None;
        let result = match encoder.begin(&mut buf) {
            Err(e) => Err(e.to_string()),
            Ok(()) => store::stream(&mut conn, &search, timeout, |row: DetectionRow| {
                // Exports are geodata: detections stored without a fix are left out.
                if let (Some(longitude), Some(latitude)) = (row.longitude, row.latitude) {
                    let encoded = encoder.feature(
                        &ExportRow {
                            id: row.id,
                            longitude,
                            latitude,
                            properties: &row.properties,
                        },
                        &mut buf,
                    );
                    if let Err(e) = encoded {
                        failure = Some(e.to_string());
                    }
                }
                let send = (failure.is_none() && buf.len() >= CHUNK)
                    .then(|| (Bytes::from(std::mem::take(&mut buf)), tx.clone()));
                let stop = failure.is_some();
                async move {
                    if stop {
                        return ControlFlow::Break(());
                    }
                    if let Some((chunk, tx)) = send {
                        // A closed channel: the client went away.
                        if tx.send(Ok(chunk)).await.is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                }
            })
            .await
            .map_err(|e| e.to_string()),
        };
        let rows = encoder.written();
        let outcome = match (result, failure) {
            (Ok(true), None) => match encoder.end(&mut buf) {
                Ok(()) if tx.send(Ok(Bytes::from(buf))).await.is_ok() => "complete",
                Ok(()) => "aborted",
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    "failed"
                }
            },
            (Ok(_), Some(e)) | (Err(e), _) => {
                tracing::warn!(format = format.name(), rows, error = %e, "export failed");
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                "failed"
            }
            (Ok(false), None) => "aborted",
        };
        if outcome != "complete" {
            // The query may still be sending rows: close the connection instead of draining
            // them into a pooled one.
            conn.discard();
        }
        tracing::info!(
            format = format.name(),
            rows,
            outcome,
            seconds = started.elapsed().as_secs_f64(),
            "export"
        );
        metrics::counter!("shadowcheck_exports_total", "format" => format.name(), "outcome" => outcome)
            .increment(1);
        metrics::counter!("shadowcheck_export_rows_total", "format" => format.name())
            .increment(rows);
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    let name = format!(
        "attachment; filename=\"detections-{}.{}\"",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
