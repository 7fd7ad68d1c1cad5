//! The OpenAPI 3.1 document of the REST API, generated from the handlers'
//! own annotations and types (utoipa), and served at `GET /openapi.json`.
//!
//! The routes and the document come from one list ([`super::api_routes`]):
//! a route registered through it is in the document by construction, and
//! `tests/openapi.rs` probes the real router for any route that bypassed it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response as SpecResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required};
use utoipa::ToSchema;

use super::ApiState;
use crate::gateway::events::Event;

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
        "An API listening off loopback needs `Authorization: Bearer <token>` (the `bearer` scheme)",
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

/// Finishes the generated document: title, version, the optional bearer
/// scheme, the event stream's frames and the guard's answers on every
/// operation.
pub(super) fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "ww-sched gateway".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "Submit WebAssembly tasks, follow their runs, read their results, cancel them. \
         Every error answer is an `ErrorBody`. A gateway listening on loopback (the \
         default) needs no token; off loopback every operation but `/healthz` and the \
         dashboard's page needs `Authorization: Bearer <token>` (401 without it)."
            .into(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    // What `/events` streams, one per `data:` line, with what it names.
    let mut event_schemas = vec![(
        <Event as ToSchema>::name().into_owned(),
        <Event as utoipa::PartialSchema>::schema(),
    )];
    <Event as ToSchema>::schemas(&mut event_schemas);
    for (name, schema) in event_schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The API token (`DATA/api-token` or `--api-token-file`): required when \
                     the gateway listens off loopback, ignored on loopback",
                ))
                .build(),
        ),
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
    // Optional: the token, or nothing (a loopback gateway). Operations open
    // to all (`/healthz`, the page shell) say `security: [{}]` themselves.
    api.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    for (path, item) in api.paths.paths.iter_mut() {
        if path == "/events" {
            if let Some(get) = &mut item.get {
                describe_event_stream(get);
            }
        }
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
            parameters_in_full(operation);
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

/// Parameters whose schema is written out (`api/schema.rs`, through
/// `schema_with`, which sets neither) get their description from their
/// schema, and path parameters are required, as OpenAPI has them.
fn parameters_in_full(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.parameter_in == ParameterIn::Path {
            parameter.required = Required::True;
        }
        if parameter.description.is_none() {
            let schema = serde_json::to_value(&parameter.schema).unwrap_or_default();
            parameter.description = schema["description"].as_str().map(str::to_string);
        }
    }
}

/// The 200 answer of `GET /events`: a `text/event-stream` body (a string to
/// OpenAPI 3.1), each frame of which is one `data:` line holding an `Event`
/// as JSON; the frame's shape is given as OpenAPI 3.2 would (`itemSchema`),
/// under the extension `x-item-schema`.
fn describe_event_stream(operation: &mut Operation) {
    let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else {
        return;
    };
    let Some(RefOr::T(content)) = ok.content.get_mut("text/event-stream") else {
        return;
    };
    content.schema = Some(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("text/event-stream")
            .description(Some(
                "Server-sent events. Every frame is one `data:` line with one `Event` as \
                 JSON (no `event:` field: the event's type is its `type`): first `hello`, \
                 then `task`, `run`, `worker_joined`, `worker_left` as they are committed \
                 or happen, and `resync` in place of events a slow reader missed. A \
                 comment line (`:`) every 15 s keeps the connection alive.",
            ))
            .into(),
    );
    content.extensions = Some(Extensions::from_iter([(
        "x-item-schema",
        super::schema::event_frame(),
    )]));
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
