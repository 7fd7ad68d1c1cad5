//! The JSON shapes the API returns: typed, so that the OpenAPI document
//! (`GET /openapi.json`) is generated from the very types the handlers send.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::sched::{Run, RunErrorKind, RunStatus, TaskHeader, TaskId, TaskStatus, WorkerId};

fn seconds(ms: u64) -> u64 {
    ms / 1000
}

/// A task with the original's keys (times in seconds) plus `status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskSummary {
    /// The task's id.
    pub id: TaskId,
    /// Free text given at submission.
    pub description: String,
    /// Runs that have finished (with any outcome), including those counted at submission.
    pub completions: u64,
    /// Time limit per run, in whole seconds.
    pub duration: u64,
    /// When the first run falls due, in whole seconds after submission.
    pub start: u64,
    /// Seconds between runs.
    pub delay: u64,
    /// Runs the task asks for.
    pub repeats: u32,
    /// The first argument (the original's `input`), if any.
    pub input: Option<i64>,
    /// The second argument (the original's `difficulty`), if any.
    pub difficulty: Option<i64>,
    /// Where the task stands.
    pub status: TaskStatus,
}

/// A task in full: its summary, its spec in milliseconds and, on
/// `GET /tasks/{id}`, a page of its runs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    /// The summary's fields.
    #[serde(flatten)]
    pub summary: TaskSummary,
    /// Hex SHA-256 of the module.
    pub module: String,
    /// The export each run calls.
    pub export: String,
    /// The export's integer arguments.
    pub args: Vec<i64>,
    /// Fuel per run (0: the worker's maximum).
    pub fuel_max: u64,
    /// Memory pages per run (0: the worker's maximum).
    pub memory_pages_max: u32,
    /// Time limit per run.
    pub duration_ms: u64,
    /// When the first run falls due, after submission.
    pub start_ms: u64,
    /// Between runs.
    pub delay_ms: u64,
    /// When the gateway acknowledged the task (its clock, ms since the epoch).
    pub submitted_ms: u64,
    /// When the task reached its final status, if it has.
    pub finished_ms: Option<u64>,
    /// Runs created so far.
    pub runs_total: u32,
    /// Index of the first run in `runs` (only with `runs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_offset: Option<u32>,
    /// A page of runs, without their stdout (only on `GET /tasks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunRow>>,
}

/// A run as a page of runs shows it: everything but its stdout, whose length
/// is given (`GET /tasks/{id}/runs/{index}` has the text).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunRow {
    /// k in 0..repeats.
    pub index: u32,
    /// Dispatches so far (0 before the first).
    pub attempt: u32,
    /// Peer id of the worker of the latest attempt.
    pub worker: Option<WorkerId>,
    /// When the run fell due (ms since the epoch).
    pub scheduled_ms: u64,
    /// When the latest attempt was handed to a worker.
    pub started_ms: Option<u64>,
    /// When the run reached its final state.
    pub finished_ms: Option<u64>,
    /// Where the run stands.
    pub status: RunStatus,
    /// Results of a successful run.
    pub results: Vec<i64>,
    /// Fuel the latest finished attempt used.
    pub fuel_used: u64,
    /// Kind of the latest error.
    pub error_kind: Option<RunErrorKind>,
    /// Message of the latest error.
    pub error: Option<String>,
    /// Length of the captured stdout, in bytes.
    pub stdout_bytes: usize,
}

/// A worker of the pool and its load.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkerRow {
    /// The worker's peer id.
    pub worker: WorkerId,
    /// Runs it takes at once.
    pub slots: u32,
    /// Runs it holds now.
    pub in_flight: u32,
    /// When it joined the pool (the gateway's clock, ms since the epoch).
    pub joined_ms: Option<u64>,
}

/// A member of the gateway's cluster view.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberRow {
    /// The member's peer id.
    pub peer: String,
    /// The host name its heartbeat gives.
    pub host: String,
    /// Hex id of the member's current incarnation.
    pub instance: String,
    /// The heartbeat's key-value metadata (e.g. `role`).
    pub meta: BTreeMap<String, String>,
    /// Until the member is dropped unless a heartbeat arrives.
    pub expires_in_ms: u64,
}

/// The answer to `DELETE /tasks/{id}?purge=true`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Purged {
    /// The task deleted.
    pub id: TaskId,
    /// Always true.
    pub purged: bool,
}

/// The answer to `POST /modules`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModuleStored {
    /// Hex SHA-256 of the module: what `module` in a JSON submission names.
    pub hash: String,
    /// The module's size.
    pub bytes: usize,
}

/// The summary of `task`.
pub fn task_summary(task: &TaskHeader) -> TaskSummary {
    let spec = &task.spec;
    TaskSummary {
        id: spec.id.clone(),
        description: spec.description.clone(),
        completions: task.completions,
        duration: seconds(spec.duration_ms),
        start: seconds(spec.schedule.start_ms),
        delay: seconds(spec.schedule.delay_ms),
        repeats: spec.schedule.repeats,
        input: spec.args.first().copied(),
        difficulty: spec.args.get(1).copied(),
        status: task.status,
    }
}

/// The row of `run` in a page of runs.
pub fn run_row(run: &Run) -> RunRow {
    RunRow {
        index: run.index,
        attempt: run.attempt,
        worker: run.worker.clone(),
        scheduled_ms: run.scheduled_ms,
        started_ms: run.started_ms,
        finished_ms: run.finished_ms,
        status: run.status,
        results: run.results.clone(),
        fuel_used: run.fuel_used,
        error_kind: run.error_kind,
        error: run.error.clone(),
        stdout_bytes: run.stdout.len(),
    }
}

/// The summary plus the general spec, the run count and, if given, a page of
/// runs starting at `runs_offset`.
pub fn task_detail(task: &TaskHeader, runs: Option<(u32, &[Run])>) -> TaskDetail {
    let spec = &task.spec;
    TaskDetail {
        summary: task_summary(task),
        module: ww::exec::ModuleHash(spec.module_hash).to_string(),
        export: spec.export.clone(),
        args: spec.args.clone(),
        fuel_max: spec.fuel_max,
        memory_pages_max: spec.memory_pages_max,
        duration_ms: spec.duration_ms,
        start_ms: spec.schedule.start_ms,
        delay_ms: spec.schedule.delay_ms,
        submitted_ms: task.submitted_ms,
        finished_ms: task.finished_ms,
        runs_total: task.runs_created,
        runs_offset: runs.map(|(offset, _)| offset),
        runs: runs.map(|(_, runs)| runs.iter().map(run_row).collect()),
    }
}
