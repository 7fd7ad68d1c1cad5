//! Tasks and runs: lists and pages read from the store, cancels and purges
//! through the core.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{bad, schema, ApiState, OFFSET_MAX, PAGE_DEFAULT, PAGE_MAX, RUNS_OFFSET_MAX};
use crate::gateway::commands::Command;
use crate::gateway::views::{task_detail, task_summary, Purged, TaskDetail, TaskSummary};
use crate::gateway::{ApiError, ErrorBody};
use crate::sched::{Run, TaskId, TaskStatus};

/// The query of `GET /tasks`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only tasks with this status (empty: all).
    #[param(schema_with = schema::status)]
    status: Option<String>,
    /// Only tasks whose id sorts after this one (a cursor: the last id of the
    /// previous page; empty: from the first).
    #[param(schema_with = schema::after)]
    after: Option<String>,
    /// Tasks to skip (after the cursor), at most 10,000: page further with
    /// `after`.
    #[serde(default)]
    #[param(schema_with = schema::offset)]
    offset: usize,
    /// Tasks in the page, 1 to 1000 (default 100).
    #[param(schema_with = schema::limit)]
    limit: Option<usize>,
}

fn page_limit(name: &str, limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(0) => Err(bad(format!("{name} must be at least 1"))),
        Some(n) if n > PAGE_MAX => Err(bad(format!(
            "{name} {n} is over the page maximum {PAGE_MAX}"
        ))),
        Some(n) => Ok(n),
    }
}

fn task_id(text: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(text).map_err(|e| ApiError::NotFound(format!("task {text:?}: {e}")))
}

/// `GET /tasks`: summaries ordered by id, built from the task headers only.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "A page of tasks, ordered by id", body = Vec<TaskSummary>)))]
pub(super) async fn list(
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
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(TaskId::parse(text).map_err(|e| bad(format!("after: {e}")))?),
    };
    let limit = page_limit("limit", query.limit)?;
    let offset = query.offset;
    if offset > OFFSET_MAX {
        return Err(bad(format!(
            "offset {offset} is over {OFFSET_MAX}: page on with `after` (the last id \
             of the previous page) instead"
        )));
    }
    let headers = state
        .reader
        .read(move |store| store.list(status, after.as_ref(), offset, limit))
        .await?;
    let rows: Vec<TaskSummary> = headers.iter().map(task_summary).collect();
    Ok(Json(rows).into_response())
}

/// The query of `GET /tasks/{id}`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DetailQuery {
    /// Index of the first run in the page, 0 to 10,000 (the most runs a task
    /// has: from there the page is empty).
    #[serde(default)]
    #[param(schema_with = schema::runs_offset)]
    runs_offset: u32,
    /// Runs in the page, 1 to 1000 (default 100).
    #[param(schema_with = schema::limit)]
    runs_limit: Option<usize>,
}

/// The path of a task.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TaskPath {
    /// The task's id (an id that breaks the id rules names no task: 404).
    #[param(schema_with = schema::task_id)]
    id: String,
}

/// The path of a run.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RunPath {
    /// The task's id.
    #[param(schema_with = schema::task_id)]
    id: String,
    /// The run's index, 0 to repeats - 1.
    #[param(schema_with = schema::run_index)]
    index: String,
}

/// A path that does not decode (bad percent-encoding, not UTF-8) names no task.
fn path_error(e: PathRejection) -> ApiError {
    ApiError::NotFound(format!("path: {}", e.body_text()))
}

/// `GET /tasks/{id}`: the task with a page of its runs (without stdout).
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(TaskPath, DetailQuery),
    responses(
        (status = 200, description = "The task and a page of its runs", body = TaskDetail),
        (status = 404, description = "No such task", body = ErrorBody),
    ))]
pub(super) async fn detail(
    State(state): State<ApiState>,
    path: Result<Path<TaskPath>, PathRejection>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(TaskPath { id }) = path.map_err(path_error)?;
    let id = task_id(&id)?;
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let limit = page_limit("runs_limit", query.runs_limit)?;
    let offset = query.runs_offset;
    if offset > RUNS_OFFSET_MAX {
        return Err(bad(format!(
            "runs_offset {offset} is over {RUNS_OFFSET_MAX}, the most runs a task has"
        )));
    }
    let wanted = id.clone();
    let (header, runs) = state
        .reader
        .read(move |store| store.task_page(&wanted, offset, limit))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {:?}", id.as_str())))?;
    Ok(Json(task_detail(&header, Some((offset, &runs)))).into_response())
}

/// Reads run `index` of task `id` from the store; 404 for an unknown task or run.
async fn find_run(state: &ApiState, id: &str, index: &str) -> Result<Run, ApiError> {
    let id = task_id(id)?;
    let index: u32 = index
        .parse()
        .map_err(|_| ApiError::NotFound(format!("run {index:?}: not a run index")))?;
    let wanted = id.clone();
    let run = state
        .reader
        .read(move |store| {
            let page = store.task_page(&wanted, index, 1)?;
            Ok(page.map(|(_, runs)| runs.into_iter().find(|r| r.index == index)))
        })
        .await?;
    match run {
        None => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
        Some(None) => Err(ApiError::NotFound(format!(
            "task {:?} has no run {index} (yet)",
            id.as_str()
        ))),
        Some(Some(run)) => Ok(run),
    }
}

/// `GET /tasks/{id}/runs/{index}`: one run, with its stdout.
#[utoipa::path(get, path = "/tasks/{id}/runs/{index}", tag = "tasks", params(RunPath),
    responses(
        (status = 200, description = "The run, with its stdout", body = Run),
        (status = 404, description = "No such task or run (yet)", body = ErrorBody),
    ))]
pub(super) async fn run(
    State(state): State<ApiState>,
    path: Result<Path<RunPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(RunPath { id, index }) = path.map_err(path_error)?;
    Ok(Json(find_run(&state, &id, &index).await?).into_response())
}

/// `GET /tasks/{id}/runs/{index}/stdout`: the run's stdout as text, so a
/// shell can pipe it without unpicking JSON (what the store holds so far:
/// empty until the run has reported).
#[utoipa::path(get, path = "/tasks/{id}/runs/{index}/stdout", tag = "tasks", params(RunPath),
    responses(
        (status = 200, description = "The run's stdout so far",
         content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No such task or run (yet)", body = ErrorBody),
    ))]
pub(super) async fn run_stdout(
    State(state): State<ApiState>,
    path: Result<Path<RunPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(RunPath { id, index }) = path.map_err(path_error)?;
    let run = find_run(&state, &id, &index).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        run.stdout,
    )
        .into_response())
}

/// The query of `DELETE /tasks/{id}`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Delete the (finished) task and its runs instead of cancelling it.
    #[serde(default)]
    #[param(schema_with = schema::purge)]
    purge: bool,
}

/// What `DELETE /tasks/{id}` answers.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum Deleted {
    /// A cancel: the task as committed after it.
    Cancelled(Box<TaskDetail>),
    /// A purge.
    Purged(Purged),
}

/// `DELETE /tasks/{id}` cancels (durably: no new run starts);
/// `DELETE /tasks/{id}?purge=true` deletes a finished task and its runs now.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", params(TaskPath, DeleteQuery),
    responses(
        (status = 200, description = "Cancelled (the task as committed) or purged", body = Deleted),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Purge of a task that has not finished", body = ErrorBody),
    ))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    path: Result<Path<TaskPath>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(TaskPath { id }) = path.map_err(path_error)?;
    let id = task_id(&id)?;
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let answer = if query.purge {
        let shown = id.clone();
        state.ask(|reply| Command::Purge { id, reply }).await??;
        Deleted::Purged(Purged {
            id: shown,
            purged: true,
        })
    } else {
        let task = state.ask(|reply| Command::Cancel { id, reply }).await??;
        Deleted::Cancelled(Box::new(task_detail(&task, None)))
    };
    Ok(Json(answer).into_response())
}
