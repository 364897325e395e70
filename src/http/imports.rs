//! `POST /api/v1/imports`: a WiGLE CSV file (raw `text/csv` or multipart, plain or gzip) streamed
//! into detections in bounded memory, or a Kismet log (`.kismet`, SQLite; recognised by its
//! content) spooled to a temporary file and read in place; answered with the import report.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::formats::{FileFormat, Input};
use crate::http::body;
use crate::http::guard::RequireIngest;
use crate::http::schema::Problem;
use crate::ingest::ImportRequest;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/imports", post(post_import))
}

#[utoipa::path(
    post,
    path = "/api/v1/imports",
    tag = "imports",
    request_body(content = String, description = "A WiGLE CSV file (1.4 or 1.6) or a Kismet log (.kismet, recognised by its SQLite header; at most ingest.max_kismet_upload_bytes), raw (text/csv, application/octet-stream, application/vnd.sqlite3; optionally gzip) or as the file field of multipart/form-data", content_type = "text/csv"),
    params(("device_id" = Option<String>, Query, description = "Capture device UUID (default: derived from the file's pre-header)")),
    responses(
        (status = 201, description = "Imported; some rows may have been rejected (see the report)", body = crate::ingest::ImportReport),
        (status = 200, description = "Nothing new stored (a re-upload, or every row rejected)", body = crate::ingest::ImportReport),
        (status = 400, description = "Not a WiGLE CSV file or a Kismet log", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "File too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; re-upload later (nothing is stored twice)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn post_import(
    State(state): State<AppState>,
    caller: RequireIngest,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let ingest = state.ingest()?.clone();
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
    // gzip is recognised by its magic bytes in the parser, whatever the headers say; other
    // encodings are refused here.
    body::gzip_encoded(request.headers())?;
    let limit = state.settings.ingest.max_import_bytes;
    let pace = body::Pace::new(&state.settings.server);
    let (reader, tx) = body::streamed();
    let mut import = ImportRequest {
        format: FileFormat::WigleCsv,
        input: Input::Stream(Box::new(reader)),
        filename: None,
        device_id,
        progress: None,
        // Counted after decompression too: a small gzip bomb is refused like a large file.
        max_bytes: Some(limit),
        reporter: Some(caller.0.name.clone()),
    };

    let (pumped, imported) = if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::MalformedBody {
                detail: format!("invalid multipart body: {e}"),
            })?;
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
        import.filename = field.file_name().map(str::to_owned);
        tokio::join!(body::pump(field, tx, limit, pace), ingest.import(import))
    } else if content_type.is_empty()
        || content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/csv")
        || content_type.starts_with("application/gzip")
        || content_type.starts_with("application/x-gzip")
        || content_type.starts_with("application/octet-stream")
        || content_type.starts_with("application/vnd.sqlite3")
        || content_type.starts_with("application/x-sqlite3")
    {
        let stream = Body::new(request.into_body()).into_data_stream();
        tokio::join!(body::pump(stream, tx, limit, pace), ingest.import(import))
    } else {
        return Err(ApiError::UnsupportedMediaType {
            detail: format!("Content-Type `{content_type}` is not accepted: send text/csv or multipart/form-data"),
        });
    };
    pumped?;
    let report = imported?;
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
