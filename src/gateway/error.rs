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

/// What went wrong, as the `error` field of every error body names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// The request is malformed (400).
    BadRequest,
    /// No such task, run, module or endpoint (404).
    NotFound,
    /// A task with this id exists already (409).
    Conflict,
    /// The body is over the limit (413).
    TooLarge,
    /// Well-formed but unusable, e.g. not a WASM module (422).
    Unprocessable,
    /// Too many unfinished tasks; retry after `Retry-After` seconds (503).
    Busy,
    /// The store failed and the gateway is stopping (503).
    Storage,
    /// The gateway itself failed (500).
    Internal,
    /// The request's `Host` or `Origin` is not this API's (403).
    Forbidden,
    /// No or wrong bearer token (401).
    Unauthorized,
    /// Too many requests in flight; retry shortly (503).
    Overloaded,
    /// The request took longer than its deadline (503).
    Timeout,
}

/// The body of every error answer: `{"error": kind, "detail": text}`.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub error: ApiErrorKind,
    /// What went wrong, for people.
    pub detail: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, ApiErrorKind) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ApiErrorKind::BadRequest),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ApiErrorKind::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ApiErrorKind::Conflict),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ApiErrorKind::TooLarge),
            ApiError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiErrorKind::Unprocessable,
            ),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, ApiErrorKind::Busy),
            ApiError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, ApiErrorKind::Storage),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ApiErrorKind::Internal),
        }
    }

    /// The error's kind as the JSON body names it.
    pub fn kind(&self) -> ApiErrorKind {
        self.parts().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let body = ErrorBody {
            error: kind,
            detail: self.to_string(),
        };
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
