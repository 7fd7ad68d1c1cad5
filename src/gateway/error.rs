//! The gateway's errors, as JSON `{ "error": kind, "detail": text }` with the
//! right HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A request the gateway refused or could not serve; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (missing field, bad number, bad id).
    #[error("{0}")]
    BadRequest(String),
    /// No such task or module.
    #[error("{0}")]
    NotFound(String),
    /// A task with this id exists already.
    #[error("{0}")]
    Conflict(String),
    /// The body is over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but unusable (e.g. not a WASM module).
    #[error("{0}")]
    Unprocessable(String),
    /// The gateway itself failed (storage, shutdown).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let body = serde_json::json!({ "error": kind, "detail": self.to_string() });
        (status, Json(body)).into_response()
    }
}
