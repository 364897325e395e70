//! Transmitters named in a path — `{radio}/{identifier}`, and `/{device_id}` for a pair the
//! detector scored — parsed once for every route that names one: a 400 problem naming the part
//! that is wrong, never a handler's own parsing.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use crate::domain::registry::TransmitterKey;
use crate::error::ApiError;

/// `{radio}/{identifier}`.
pub struct TransmitterPath(pub TransmitterKey);

/// `{radio}/{identifier}/{device_id}`: a transmitter and the capture device it was seen with.
pub struct PairPath {
    pub key: TransmitterKey,
    pub device: Uuid,
}

fn transmitter(radio: &str, identifier: &str) -> Result<TransmitterKey, ApiError> {
    TransmitterKey::parse(radio, identifier).map_err(|why| ApiError::BadRequest {
        detail: why,
        parameter: Some("identifier".into()),
    })
}

/// A path that is not even text (bad percent-encoding).
fn unreadable(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::BadRequest {
        detail: rejection.body_text(),
        parameter: None,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TransmitterPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((radio, identifier)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(unreadable)?;
        transmitter(&radio, &identifier).map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PairPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((radio, identifier, device)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(unreadable)?;
        Ok(Self {
            key: transmitter(&radio, &identifier)?,
            device: device.parse().map_err(|_| ApiError::BadRequest {
                detail: "the capture device must be a UUID".into(),
                parameter: Some("device_id".into()),
            })?,
        })
    }
}
