//! The OpenAPI 3.1 document of the REST API, generated from the handlers'
//! own annotations and types (utoipa), and served at `GET /openapi.json`.
//!
//! The routes and the document come from one list ([`super::api_routes`]):
//! a route registered through it is in the document by construction, and
//! `tests/openapi.rs` probes the real router for any route that bypassed it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::response::{Response as SpecResponse, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

use super::ApiState;

/// The answers the guard in front of every route may give (see
/// `guard.rs`), as `(status, name of the shared response, description)`.
const GUARD_RESPONSES: [(&str, &str, &str); 4] = [
    (
        "400",
        "BadRequest",
        "Malformed request: no or a repeated `Host`, a bad parameter or body",
    ),
    (
        "401",
        "Unauthorized",
        "An API listening off loopback needs `Authorization: Bearer <token>`",
    ),
    (
        "403",
        "Forbidden",
        "The `Host` or `Origin` is not this API's (DNS rebinding, cross-site requests)",
    ),
    (
        "503",
        "Unavailable",
        "`overloaded` or `timeout` (retry after `Retry-After` seconds), `busy`, or \
         `storage` once a store error stopped the gateway",
    ),
];

/// Finishes the generated document: title, version, the bearer scheme and
/// the guard's answers on every operation.
pub(super) fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "ww-sched gateway".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "Submit WebAssembly tasks, follow their runs, read their results, cancel them. \
         Every error answer is an `ErrorBody`."
            .into(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    // What `/events` streams, one per `data:` line.
    components.schemas.insert(
        "Event".to_string(),
        <crate::gateway::events::Event as utoipa::PartialSchema>::schema(),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (_, name, description) in GUARD_RESPONSES {
        let response: SpecResponse = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        components
            .responses
            .insert(name.to_string(), RefOr::T(response));
    }
    api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, name, _) in GUARD_RESPONSES {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
    api
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
               content_type = "application/json", body = Object))
)]
pub(super) async fn document(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}
