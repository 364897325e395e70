//! `POST /api/v1/imports`: a WiGLE CSV file (raw `text/csv` or multipart, plain or gzip) streamed
//! into detections in bounded memory, answered with the import report.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::error::ApiError;
use crate::formats::import::{
    import_wigle, ChannelReader, Destination, ImportError, ImportOptions,
};
use crate::http::guard::RequireIngest;
use crate::http::openapi::Problem;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/imports", post(post_import))
}

type Chunk = Result<axum::body::Bytes, std::io::Error>;

/// Feeds a stream of body chunks into the parser's channel, enforcing the size limit.
async fn pump<S, E>(mut stream: S, tx: mpsc::Sender<Chunk>, limit: u64) -> Result<(), ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                total += bytes.len() as u64;
                if total > limit {
                    let _ = tx
                        .send(Err(std::io::Error::other(
                            "upload exceeds the import size limit",
                        )))
                        .await;
                    return Err(ApiError::PayloadTooLarge {
                        detail: format!("the file exceeds the import limit of {limit} bytes"),
                    });
                }
                if tx.send(Ok(bytes)).await.is_err() {
                    // The parser stopped (bad header); its error is reported instead.
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/imports",
    tag = "imports",
    request_body(content = String, description = "A WiGLE CSV file (1.4 or 1.6), raw (text/csv, optionally Content-Encoding: gzip) or as the file field of multipart/form-data", content_type = "text/csv"),
    params(("device_id" = Option<String>, Query, description = "Capture device UUID (default: derived from the file's pre-header)")),
    responses(
        (status = 201, description = "Imported; some rows may have been rejected (see the report)", body = crate::formats::import::ImportReport),
        (status = 200, description = "Nothing new stored (a re-upload, or every row rejected)", body = crate::formats::import::ImportReport),
        (status = 400, description = "Not a WiGLE CSV file", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "File too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; re-upload later (nothing is stored twice)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn post_import(
    State(state): State<AppState>,
    _caller: RequireIngest,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let pool = state.database()?.clone();
    let device_id = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "device_id")
        .map(|(_, v)| v.into_owned());
    if let Some(id) = &device_id {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ApiError::bad_parameter("device_id", "must be a UUID"));
        }
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    if !matches!(encoding.as_str(), "identity" | "gzip" | "x-gzip") {
        return Err(ApiError::UnsupportedMediaType {
            detail: format!("Content-Encoding `{encoding}` is not supported; use gzip or none"),
        });
    }
    let limit = state.settings.ingest.max_import_bytes;
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let options = ImportOptions {
        filename: None,
        device_id,
        max_future_skew: chrono::Duration::seconds(state.settings.ingest.max_future_skew_secs),
        privacy: state.privacy.clone(),
        progress: None,
    };
    // gzip is recognised by its magic bytes in the importer, whatever the headers say.
    let reader: Box<dyn std::io::Read + Send> = Box::new(ChannelReader::new(rx));

    let (pumped, imported) = if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::MalformedBody {
                detail: format!("invalid multipart body: {e}"),
            })?;
        let mut options = options;
        // The first field that carries a file (or any field, for clients that omit filenames).
        let field = loop {
            match multipart.next_field().await {
                Ok(Some(f)) if f.file_name().is_some() || f.name() == Some("file") => break f,
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(ApiError::MalformedBody {
                        detail: "the multipart body has no file field".into(),
                    })
                }
                Err(e) => {
                    return Err(ApiError::MalformedBody {
                        detail: format!("invalid multipart body: {e}"),
                    })
                }
            }
        };
        options.filename = field.file_name().map(str::to_owned);
        tokio::join!(
            pump(field, tx, limit),
            import_wigle(reader, Destination::Database(pool), options)
        )
    } else if content_type.is_empty()
        || content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/csv")
        || content_type.starts_with("application/gzip")
        || content_type.starts_with("application/x-gzip")
        || content_type.starts_with("application/octet-stream")
    {
        let stream = Body::new(request.into_body()).into_data_stream();
        tokio::join!(
            pump(stream, tx, limit),
            import_wigle(reader, Destination::Database(pool), options)
        )
    } else {
        return Err(ApiError::UnsupportedMediaType {
            detail: format!("Content-Type `{content_type}` is not accepted: send text/csv or multipart/form-data"),
        });
    };
    pumped?;
    let report = match imported {
        Ok(report) => report,
        Err(ImportError::Format(why)) => return Err(ApiError::MalformedBody { detail: why }),
        Err(ImportError::Api(e)) => return Err(e),
    };
    tracing::info!(import_id = %report.import_id, rows = report.rows_read, stored = report.stored, duplicates = report.duplicates, rejected = report.rejected, complete = report.complete, "import finished");
    if !report.complete {
        // Not a 2xx: the file was not imported as a whole, though the rows before the damage are
        // committed (and a re-upload of the complete file stores nothing twice).
        return Err(ApiError::Unprocessable {
            detail: format!(
                "import {}: {}; the {} rows before it were processed ({} stored); re-upload the complete file",
                report.import_id,
                report.failure.clone().unwrap_or_default(),
                report.rows_read,
                report.stored
            ),
            errors: Vec::new(),
        });
    }
    let status = if report.stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}
