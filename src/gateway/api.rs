//! The REST API (axum). Handlers parse and validate, then ask the gateway core
//! (which owns the scheduler, the store and the worker pool on the node's RPC
//! thread) through a bounded command queue.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::core::{Command, ModuleInput, NewTask};
use super::views::{task_detail, task_summary};
use super::ApiError;
use crate::sched::{Schedule, TaskId, TaskStatus};

/// What every handler shares: the way to the core, and limits.
#[derive(Clone)]
pub struct ApiState {
    commands: mpsc::Sender<Command>,
}

/// Builds the router; `body_bytes_max` bounds every request body.
pub fn router(commands: mpsc::Sender<Command>, body_bytes_max: usize) -> Router {
    Router::new()
        .route("/tasks", post(submit).get(list))
        .route("/tasks/{id}", get(detail).delete(cancel))
        .route("/modules", post(upload_module))
        .route("/workers", get(workers))
        .route("/cluster", get(cluster))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(|| async {
            ApiError::NotFound(
                "no such endpoint: see /tasks, /tasks/{id}, /modules, /workers, /cluster, /healthz"
                    .into(),
            )
        })
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(ApiState { commands })
}

impl ApiState {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| ApiError::Internal("the gateway is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the gateway dropped the request".into()))
    }
}

/// The JSON form of a submission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskJson {
    id: Option<String>,
    #[serde(default)]
    description: String,
    /// Hex SHA-256 of a module uploaded with `POST /modules`.
    module: Option<String>,
    /// The module itself, base64.
    wasm_base64: Option<String>,
    #[serde(default = "default_export")]
    export: String,
    #[serde(default)]
    args: Vec<i64>,
    #[serde(default)]
    fuel_max: u64,
    #[serde(default)]
    memory_pages_max: u32,
    /// Per-run time limit.
    #[serde(default = "default_duration_ms")]
    duration_ms: u64,
    #[serde(default)]
    start_ms: u64,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default = "one")]
    repeats: u32,
    #[serde(default)]
    completions: u64,
}

fn default_export() -> String {
    "run".into()
}

fn default_duration_ms() -> u64 {
    30_000
}

fn one() -> u32 {
    1
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest(detail.into())
}

fn parse_task_id(id: Option<String>) -> Result<Option<TaskId>, ApiError> {
    match id.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => TaskId::parse(&text)
            .map(Some)
            .map_err(|e| bad(format!("id: {e}"))),
    }
}

async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    #[cfg(feature = "sabotage")]
    if crate::sabotage::armed(crate::sabotage::Sabotage::RefuseSubmissions) {
        return ApiError::Internal("sabotage: submissions refused".into()).into_response();
    }
    let result = async {
        let idempotency_key = match headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .map_err(|_| bad("Idempotency-Key must be visible ASCII"))?;
                if key.is_empty() || key.len() > 256 {
                    return Err(bad("Idempotency-Key must be 1 to 256 characters"));
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
        let location = format!("/tasks/{}", task.spec.id.0);
        Ok((
            status,
            [(header::LOCATION, location)],
            Json(task_detail(&task)),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

use axum::extract::FromRequest;

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
    Ok(NewTask {
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
    })
}

fn parse_hash(text: &str) -> Result<[u8; 32], ApiError> {
    let hash = crate::exec::ModuleHash::from_hex(text)
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
    Ok(NewTask {
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
    })
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

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// Most tasks one page returns.
pub const PAGE_MAX: usize = 1000;

async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            serde_json::from_value::<TaskStatus>(serde_json::Value::String(text.to_string()))
                .map_err(|_| {
                    bad(format!(
                        "status {text:?}: one of pending, running, succeeded, failed, cancelled"
                    ))
                })?,
        ),
    };
    let limit = query.limit.unwrap_or(100).min(PAGE_MAX);
    let tasks = state
        .ask(|reply| Command::List {
            status,
            offset: query.offset,
            limit,
            reply,
        })
        .await?;
    let rows: Vec<serde_json::Value> = tasks.iter().map(task_summary).collect();
    Ok(Json(rows).into_response())
}

async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = TaskId::parse(&id).map_err(|e| ApiError::NotFound(format!("task {id:?}: {e}")))?;
    let task = state
        .ask(|reply| Command::Get {
            id: id.clone(),
            reply,
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {:?}", id.0)))?;
    Ok(Json(task_detail(&task)).into_response())
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = TaskId::parse(&id).map_err(|e| ApiError::NotFound(format!("task {id:?}: {e}")))?;
    let task = state.ask(|reply| Command::Cancel { id, reply }).await??;
    Ok(Json(task_detail(&task)).into_response())
}

async fn upload_module(
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
    let hex = crate::exec::ModuleHash(hash).to_string();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/modules/{hex}"))],
        Json(serde_json::json!({ "hash": hex, "bytes": body.len() })),
    )
        .into_response())
}

async fn workers(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let rows = state.ask(|reply| Command::Workers { reply }).await?;
    Ok(Json(rows).into_response())
}

async fn cluster(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let rows = state.ask(|reply| Command::Cluster { reply }).await?;
    Ok(Json(rows).into_response())
}
