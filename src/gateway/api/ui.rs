//! The web dashboard: a page shell (HTML, JavaScript, CSS) compiled into the
//! binary, served at `/` and `/ui/...`, and the live event stream it follows
//! (`/events`). The shell holds no data, so it is served without the API
//! token (the guard's Host and Origin checks still apply); every request for
//! data the page makes carries the token. Each asset is served with a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! inline script, no framing) and `X-Content-Type-Options: nosniff`.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{events, ApiState};
use crate::gateway::{ApiError, ErrorBody};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// The Content-Security-Policy of every dashboard asset.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, the shell and the event stream, with their part
/// of the OpenAPI document.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(ui))
        .routes(routes!(ui_slash))
        .routes(routes!(asset))
        .routes(routes!(events::stream))
}

/// Whether `path` is the page shell, which may be fetched without the token.
pub(super) fn is_page_shell(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The headers every shell answer carries, found or not.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /`: the dashboard's page.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's page (no data: it asks the API with the token)",
               content_type = "text/html; charset=utf-8", body = String)))]
async fn index() -> Response {
    page()
}

/// `GET /ui`: the dashboard's page.
#[utoipa::path(get, path = "/ui", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's page",
               content_type = "text/html; charset=utf-8", body = String)))]
async fn ui() -> Response {
    page()
}

/// `GET /ui/`: the dashboard's page.
#[utoipa::path(get, path = "/ui/", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's page",
               content_type = "text/html; charset=utf-8", body = String)))]
async fn ui_slash() -> Response {
    page()
}

/// The page shell with its headers.
fn page() -> Response {
    secured(
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            INDEX_HTML,
        )
            .into_response(),
    )
}

/// The path of a dashboard file.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its parameter is used: the path is read as a string.
struct AssetPath {
    /// The file: `index.html`, `app.js` or `style.css` (any other: 404).
    #[param(schema_with = super::schema::ui_file)]
    file: String,
}

/// `GET /ui/{file}`: one of the page's files (`index.html`, `app.js`, `style.css`).
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard", security(()),
    params(AssetPath),
    responses(
        (status = 200, description = "The file",
         content((String = "text/html; charset=utf-8"), (String = "text/javascript; charset=utf-8"),
                 (String = "text/css; charset=utf-8"))),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
async fn asset(file: Result<Path<String>, PathRejection>) -> Response {
    // A name that does not decode (not UTF-8) names no file.
    let Ok(Path(file)) = file else {
        return secured(ApiError::NotFound("no such dashboard file".into()).into_response());
    };
    let (content_type, body) = match file.as_str() {
        "index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => {
            return secured(
                ApiError::NotFound(format!("no dashboard file {file:?}")).into_response(),
            )
        }
    };
    secured(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
