//! Tasks and runs: lists and pages read from the store, cancels and purges
//! through the core.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{bad, ApiState, PAGE_DEFAULT, PAGE_MAX};
use crate::gateway::commands::Command;
use crate::gateway::views::{task_detail, task_summary};
use crate::gateway::ApiError;
use crate::sched::{Run, TaskId, TaskStatus};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    /// Only tasks whose id sorts after this one (a cursor: the last id of the
    /// previous page).
    after: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(0) => Err(bad("limit must be at least 1")),
        Some(n) if n > PAGE_MAX => Err(bad(format!(
            "limit {n} is over the page maximum {PAGE_MAX}"
        ))),
        Some(n) => Ok(n),
    }
}

fn task_id(text: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(text).map_err(|e| ApiError::NotFound(format!("task {text:?}: {e}")))
}

/// `GET /tasks`: summaries ordered by id, built from the task headers only.
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
    let limit = page_limit(query.limit)?;
    let offset = query.offset;
    let headers = state
        .reader
        .read(move |store| store.list(status, after.as_ref(), offset, limit))
        .await?;
    let rows: Vec<serde_json::Value> = headers.iter().map(task_summary).collect();
    Ok(Json(rows).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DetailQuery {
    #[serde(default)]
    runs_offset: u32,
    runs_limit: Option<usize>,
}

/// `GET /tasks/{id}`: the task with a page of its runs (without stdout).
pub(super) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let limit = page_limit(query.runs_limit)?;
    let offset = query.runs_offset;
    let wanted = id.clone();
    let (header, runs) = state
        .reader
        .read(move |store| store.task_page(&wanted, offset, limit))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {:?}", id.0)))?;
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
        None => Err(ApiError::NotFound(format!("no task {:?}", id.0))),
        Some(None) => Err(ApiError::NotFound(format!(
            "task {:?} has no run {index} (yet)",
            id.0
        ))),
        Some(Some(run)) => Ok(run),
    }
}

/// `GET /tasks/{id}/runs/{index}`: one run, with its stdout.
pub(super) async fn run(
    State(state): State<ApiState>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(find_run(&state, &id, &index).await?).into_response())
}

/// `GET /tasks/{id}/runs/{index}/stdout`: the run's stdout as text, so a
/// shell can pipe it without unpicking JSON (what the store holds so far:
/// empty until the run has reported).
pub(super) async fn run_stdout(
    State(state): State<ApiState>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let run = find_run(&state, &id, &index).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        run.stdout,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

/// `DELETE /tasks/{id}` cancels (durably: no new run starts);
/// `DELETE /tasks/{id}?purge=true` deletes a finished task and its runs now.
pub(super) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    if query.purge {
        let shown = id.0.clone();
        state.ask(|reply| Command::Purge { id, reply }).await??;
        return Ok(Json(serde_json::json!({ "id": shown, "purged": true })).into_response());
    }
    let task = state.ask(|reply| Command::Cancel { id, reply }).await??;
    Ok(Json(task_detail(&task, None)).into_response())
}
