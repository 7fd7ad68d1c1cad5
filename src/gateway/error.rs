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
    /// Too many unfinished tasks: retry after `RETRY_AFTER_S` (503).
    #[error("{0}")]
    Busy(String),
    /// The store failed: nothing is acknowledged or shown any more, and the
    /// gateway is stopping so that it restarts on its data (503).
    #[error("{0}")]
    Storage(String),
    /// The gateway itself failed (shutdown, a bug).
    #[error("{0}")]
    Internal(String),
}

/// Seconds a client told `busy` should wait before retrying.
pub const RETRY_AFTER_S: u64 = 1;

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The error's kind as the JSON body names it.
    pub fn kind(&self) -> &'static str {
        self.parts().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let body = serde_json::json!({ "error": kind, "detail": self.to_string() });
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Busy(_) | ApiError::Storage(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_S),
            );
        }
        response
    }
}
