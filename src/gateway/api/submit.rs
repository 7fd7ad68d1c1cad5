//! Submissions (the original's multipart form and JSON) and module uploads.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{bad, schema, ApiState};
use crate::gateway::commands::{Command, ModuleInput, NewTask};
use crate::gateway::views::{task_detail, ModuleStored, TaskDetail};
use crate::gateway::{ApiError, ErrorBody};
use crate::sched::types::check_fields;
use crate::sched::{Schedule, TaskId, IDEMPOTENCY_KEY_BYTES_MAX};

/// The JSON form of a submission: exactly one of `module` and `wasm_base64`.
/// Its schema is written out (`schema::task_json`): the derived one could
/// say neither the bounds nor the one-of.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskJson {
    /// The task's id (letters, digits, `-`, `_`, `.`); generated when absent.
    id: Option<String>,
    /// Free text.
    #[serde(default)]
    description: String,
    /// Hex SHA-256 of a module uploaded with `POST /modules`.
    module: Option<String>,
    /// The module itself, base64.
    wasm_base64: Option<String>,
    /// The export each run calls.
    #[serde(default = "default_export")]
    export: String,
    /// The export's integer arguments.
    #[serde(default)]
    args: Vec<i64>,
    /// Fuel per run (0: the worker's maximum).
    #[serde(default)]
    fuel_max: u64,
    /// Memory pages (64 KiB) per run (0: the worker's maximum).
    #[serde(default)]
    memory_pages_max: u32,
    /// Per-run time limit.
    #[serde(default = "default_duration_ms")]
    duration_ms: u64,
    /// When the first run falls due, after submission.
    #[serde(default)]
    start_ms: u64,
    /// Between runs.
    #[serde(default)]
    delay_ms: u64,
    /// Runs to make.
    #[serde(default = "one")]
    repeats: u32,
    /// Completions already counted (runs to skip).
    #[serde(default)]
    completions: u64,
}

impl utoipa::PartialSchema for TaskJson {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::task_json()
    }
}

impl ToSchema for TaskJson {}

/// The original's multipart form (times in seconds; `input` and
/// `difficulty` are the export's two arguments). `parse_form` reads it
/// field by field; its schema is `schema::task_form`.
pub(super) struct TaskForm;

impl utoipa::PartialSchema for TaskForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::task_form()
    }
}

impl ToSchema for TaskForm {}

/// The headers of `POST /tasks`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only its parameters are used: the header is read by hand.
pub(super) struct SubmitHeaders {
    /// Makes a retried submission return the task the first one made
    /// (visible ASCII, 1 to 256 characters); used with another body: 422.
    #[param(rename = "Idempotency-Key", schema_with = schema::idempotency_key)]
    idempotency_key: Option<String>,
}

/// A WebAssembly module's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only its schema is used: the body is read as bytes.
pub(super) struct ModuleBytes(Vec<u8>);

fn default_export() -> String {
    "run".into()
}

fn default_duration_ms() -> u64 {
    30_000
}

fn one() -> u32 {
    1
}

fn parse_task_id(id: Option<String>) -> Result<Option<TaskId>, ApiError> {
    match id.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => TaskId::parse(&text)
            .map(Some)
            .map_err(|e| bad(format!("id: {e}"))),
    }
}

/// `POST /tasks`: 201 with the task once it is committed (200 for a retry
/// with the same `Idempotency-Key`).
#[utoipa::path(post, path = "/tasks", tag = "tasks",
    params(SubmitHeaders),
    request_body(content(
        (TaskJson = "application/json"),
        (TaskForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Committed; `Location` names the task", body = TaskDetail,
         headers(("Location" = String, description = "/tasks/{id}"))),
        (status = 200, description = "A retry with the same Idempotency-Key: the task it made", body = TaskDetail),
        (status = 409, description = "A task with this id exists already", body = ErrorBody),
        (status = 413, description = "The body or the module is over the limit", body = ErrorBody),
        (status = 422, description = "The module is not valid WebAssembly, `module` names none uploaded, \
          or the `Idempotency-Key` was used with another body", body = ErrorBody),
    ))]
pub(super) async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let result = async {
        let idempotency_key = match headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .map_err(|_| bad("Idempotency-Key must be visible ASCII"))?;
                if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                    return Err(bad(format!(
                        "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} characters"
                    )));
                }
                // HTTP strips them on the way: such a key would not be the
                // one the client meant (the document's pattern says so too).
                if key.starts_with([' ', '\t']) || key.ends_with([' ', '\t']) {
                    return Err(bad(
                        "Idempotency-Key must not start or end with a space or tab",
                    ));
                }
                Some(key.to_string())
            }
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let new_task = if content_type.starts_with("multipart/form-data") {
            let multipart = Multipart::from_request(request, &state)
                .await
                .map_err(|e| bad(format!("multipart: {}", e.body_text())))?;
            parse_form(multipart).await?
        } else if content_type.starts_with("application/json") {
            let Json(body): Json<TaskJson> =
                Json::from_request(request, &state).await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::TooLarge(format!(
                            "request body over the limit: {}",
                            e.body_text()
                        ))
                    } else {
                        bad(format!("JSON body: {}", e.body_text()))
                    }
                })?;
            parse_json(body)?
        } else {
            return Err(ApiError::BadRequest(
                "send multipart/form-data (the original form) or application/json".into(),
            ));
        };
        let (task, created) = state
            .ask(|reply| Command::Submit {
                task: new_task,
                idempotency_key,
                reply,
            })
            .await??;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let location = format!("/tasks/{}", task.spec.id.as_str());
        Ok((
            status,
            [(header::LOCATION, location)],
            Json(task_detail(&task, None)),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse_json(body: TaskJson) -> Result<NewTask, ApiError> {
    let module = match (body.module, body.wasm_base64) {
        (Some(hash), None) => ModuleInput::Hash(parse_hash(&hash)?),
        (None, Some(b64)) => ModuleInput::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| bad(format!("wasm_base64: {e}")))?,
        ),
        _ => {
            return Err(bad(
                "give exactly one of `module` (hex hash) and `wasm_base64`",
            ))
        }
    };
    let task = NewTask {
        id: parse_task_id(body.id)?,
        description: body.description,
        module,
        export: body.export,
        args: body.args,
        fuel_max: body.fuel_max,
        memory_pages_max: body.memory_pages_max,
        duration_ms: body.duration_ms,
        schedule: Schedule {
            start_ms: body.start_ms,
            delay_ms: body.delay_ms,
            repeats: body.repeats,
        },
        completions_initial: body.completions,
    };
    check_bounds(&task)?;
    Ok(task)
}

/// The bounds every submission is held to (the scheduler's own, checked
/// here first so a refusal is a 400 naming the field, whatever the module).
fn check_bounds(task: &NewTask) -> Result<(), ApiError> {
    check_fields(
        &task.description,
        &task.export,
        &task.args,
        task.duration_ms,
        &task.schedule,
    )
    .map_err(|e| bad(e.to_string()))
}

fn parse_hash(text: &str) -> Result<[u8; 32], ApiError> {
    let hash = ww::exec::ModuleHash::from_hex(text)
        .map_err(|_| bad(format!("module {text:?} is not a 64-digit hex SHA-256")))?;
    Ok(hash.0)
}

/// The original's form: seconds for times, `input`/`difficulty` as the two arguments.
async fn parse_form(mut form: Multipart) -> Result<NewTask, ApiError> {
    let mut fields = std::collections::BTreeMap::new();
    let mut wasm = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error("multipart", e))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "wasm" {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| multipart_error("field wasm", e))?;
            wasm = Some(bytes.to_vec());
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| multipart_error(&format!("field {name}"), e))?;
            fields.insert(name, text);
        }
    }
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        match fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| bad(format!("field {name}: {text:?} is not a whole number"))),
        }
    };
    let signed = |name: &str| -> Result<i64, ApiError> {
        let text = fields.get(name).map(|s| s.trim()).unwrap_or("");
        text.parse()
            .map_err(|_| bad(format!("field {name}: {text:?} is not an integer")))
    };
    let seconds = |name: &str, default: u64| -> Result<u64, ApiError> {
        number(name, default)?
            .checked_mul(1000)
            .ok_or_else(|| bad(format!("field {name} is too large")))
    };
    let wasm = wasm.ok_or_else(|| bad("field wasm (the module file) is missing"))?;
    let repeats =
        u32::try_from(number("repeats", 1)?).map_err(|_| bad("field repeats is too large"))?;
    let task = NewTask {
        id: parse_task_id(fields.get("id").cloned())?,
        description: fields.get("description").cloned().unwrap_or_default(),
        module: ModuleInput::Bytes(wasm),
        export: "run".into(),
        args: vec![signed("input")?, signed("difficulty")?],
        fuel_max: 0,
        memory_pages_max: 0,
        duration_ms: seconds("duration", 30)?,
        schedule: Schedule {
            start_ms: seconds("start", 0)?,
            delay_ms: seconds("delay", 0)?,
            repeats,
        },
        completions_initial: number("complete", 0)?,
    };
    check_bounds(&task)?;
    Ok(task)
}

/// A body over the limit is 413 wherever the form hits it; anything else is 400.
/// (`MultipartError`'s `Display` is generic; `body_text` says what went wrong.)
fn multipart_error(context: &str, e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("request body over the limit: {}", e.body_text()))
    } else {
        bad(format!("{context}: {}", e.body_text()))
    }
}

/// `POST /modules`: the module's hash once it is committed.
#[utoipa::path(post, path = "/modules", tag = "tasks",
    request_body(content = ModuleBytes, content_type = "application/wasm",
                 description = "The module's bytes (any content type is read as bytes)"),
    responses(
        (status = 201, description = "Committed; `module` in a submission may name its hash",
         body = ModuleStored),
        (status = 413, description = "The module is over the limit", body = ErrorBody),
        (status = 422, description = "Not a WebAssembly module", body = ErrorBody),
    ))]
pub(super) async fn upload_module(
    State(state): State<ApiState>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body over the limit: {}", e.body_text()))
        } else {
            bad(format!("body: {}", e.body_text()))
        }
    })?;
    let hash = state
        .ask(|reply| Command::PutModule {
            bytes: body.to_vec(),
            reply,
        })
        .await??;
    let hex = ww::exec::ModuleHash(hash).to_string();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/modules/{hex}"))],
        Json(ModuleStored {
            hash: hex,
            bytes: body.len(),
        }),
    )
        .into_response())
}
