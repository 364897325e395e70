//! `ApiError` → `application/problem+json` (RFC 9457). The single place that picks status codes;
//! internal error text is logged here and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::formats::FormatError;
use crate::ingest::{IngestError, ItemError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        detail: String,
        parameter: Option<String>,
    },
    #[error("{detail}")]
    MalformedBody { detail: String },
    #[error("{detail}")]
    PayloadTooLarge { detail: String },
    #[error("{detail}")]
    TooSlow { detail: String },
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        errors: Vec<ItemError>,
    },
    #[error("{detail}")]
    Conflict { detail: String },
    #[error("{detail}")]
    Unauthorized { detail: String },
    #[error("{detail}")]
    Forbidden { detail: String },
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u32 },
    /// The caller already holds all its turns of something (its exports); 429 saying which.
    #[error("{detail}")]
    CallerBusy {
        detail: String,
        retry_after_secs: u32,
    },
    #[error("{detail}")]
    NotFound { detail: String },
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u32,
    },
    /// The server is at a capacity bound of its own (not the database's); retry shortly.
    #[error("{detail}")]
    Overloaded {
        detail: String,
        retry_after_secs: u32,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ApiResult<T, E = ApiError> = Result<T, E>;

impl ApiError {
    pub fn bad_parameter(parameter: &str, why: impl std::fmt::Display) -> Self {
        Self::BadRequest {
            detail: format!("query parameter `{parameter}`: {why}"),
            parameter: Some(parameter.to_owned()),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "Invalid request parameter",
            ),
            Self::MalformedBody { .. } => (
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "Malformed request body",
            ),
            Self::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::TooSlow { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "request-too-slow",
                "Request body too slow",
            ),
            Self::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Unprocessable { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "No valid detection in request",
            ),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::Unauthorized { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Insufficient scope"),
            Self::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Self::CallerBusy { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-at-once",
                "Too many at once for this key",
            ),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Service temporarily unavailable",
            ),
            Self::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Server busy")
            }
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_statement_timeout(&e) {
            tracing::warn!(error = %e, "statement timeout");
            return Self::Unavailable {
                detail: "the query took longer than the server allows \
                         (database.statement_timeout_ms); narrow the area, time window or limit"
                    .to_owned(),
                retry_after_secs: 5,
            };
        }
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable {
                detail: "the database is unavailable; retry later".to_owned(),
                retry_after_secs: 5,
            }
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Empty => Self::Unprocessable {
                detail: e.to_string(),
                errors: Vec::new(),
            },
            IngestError::TooMany { .. } => Self::PayloadTooLarge {
                detail: e.to_string(),
            },
            IngestError::NothingValid { ref errors, .. } => Self::Unprocessable {
                detail: e.to_string(),
                errors: errors.clone(),
            },
            IngestError::IdempotencyMismatch | IngestError::IdempotencyInProgress => {
                Self::Conflict {
                    detail: e.to_string(),
                }
            }
            IngestError::Format(e) => e.into(),
            IngestError::Exceeded {
                what: crate::formats::Exceeded::Bytes(_),
                detail,
            } => Self::PayloadTooLarge { detail },
            IngestError::Exceeded { detail, .. } => Self::MalformedBody { detail },
            IngestError::Database(e) => e.into(),
            IngestError::Internal(message) => Self::Internal(message),
        }
    }
}

impl From<FormatError> for ApiError {
    fn from(e: FormatError) -> Self {
        Self::MalformedBody { detail: e.0 }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ItemError]>,
    /// Members a protocol's clients expect besides RFC 9457's (ichnaea's `error`).
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Builds a problem+json response; also used for errors raised outside handlers (e.g. panics).
pub fn problem_response(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    with_problem_type(status, problem_body(status, slug, title, detail))
}

/// The problem+json document alone (for answers written below the router).
pub fn problem_body(status: StatusCode, slug: &str, title: &str, detail: String) -> Vec<u8> {
    let body = Problem {
        kind: format!("urn:shadowcheck:problem:{slug}"),
        title,
        status: status.as_u16(),
        detail,
        parameter: None,
        errors: None,
        extra: serde_json::Map::new(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn with_problem_type(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_with(serde_json::Map::new())
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The problem+json answer with `extra` members added (a protocol's own error shape, for
    /// clients that read only that).
    pub fn into_response_with(self, extra: serde_json::Map<String, serde_json::Value>) -> Response {
        let (status, slug, title) = self.parts();
        let detail = match &self {
            Self::Internal(message) => {
                tracing::error!(error = %message, "request failed");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let (parameter, errors) = match &self {
            Self::BadRequest { parameter, .. } => (parameter.as_deref(), None),
            Self::Unprocessable { errors, .. } => (None, Some(errors.as_slice())),
            _ => (None, None),
        };
        let body = Problem {
            kind: format!("urn:shadowcheck:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            parameter,
            errors,
            extra,
        };
        let mut response = with_problem_type(status, serde_json::to_vec(&body).unwrap_or_default());
        match self {
            Self::Unavailable {
                retry_after_secs, ..
            }
            | Self::Overloaded {
                retry_after_secs, ..
            }
            | Self::CallerBusy {
                retry_after_secs, ..
            }
            | Self::TooManyRequests { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthorized { .. } => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shadowcheck\""),
                );
            }
            _ => {}
        }
        response
    }
}
