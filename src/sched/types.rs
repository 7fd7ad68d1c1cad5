//! Tasks, runs and their states: the data the scheduler owns and the store persists.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::SchedError;
pub use super::id::{truncated, TaskId, TASK_ID_CHARS_MAX};

/// Most runs one task may ask for.
pub const REPEATS_MAX: u32 = 10_000;
/// Longest description kept, in bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 4096;
/// Longest export name, in bytes.
pub const EXPORT_BYTES_MAX: usize = 256;
/// Most integer arguments per call.
pub const ARGS_MAX: usize = 64;
/// Most results kept per run.
pub const RESULTS_MAX: usize = 64;
/// Captured stdout kept per run, in bytes; the rest is cut at a char boundary.
pub const STDOUT_BYTES_MAX: usize = 64 * 1024;
/// Longest error kind kept, in bytes.
pub const ERROR_KIND_BYTES_MAX: usize = 64;
/// Longest error message kept, in bytes.
pub const ERROR_BYTES_MAX: usize = 4096;
/// Longest start or delay: one year, so due-time arithmetic cannot overflow.
pub const SCHEDULE_MS_MAX: u64 = 365 * 24 * 3600 * 1000;
/// Longest per-run limit: one day.
pub const DURATION_MS_MAX: u64 = 24 * 3600 * 1000;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;

/// When a task's runs are due: `start_ms + k * delay_ms` after submission, k in 0..repeats.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Delay before the first run.
    pub start_ms: u64,
    /// Delay between the due times of consecutive runs (runs may overlap).
    pub delay_ms: u64,
    /// Number of runs, 1..=`REPEATS_MAX`.
    pub repeats: u32,
}

/// What to run and how often: fixed at submission.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// The task's id.
    pub id: TaskId,
    /// Free text from the user.
    pub description: String,
    /// SHA-256 of the module bytes (hex text in JSON).
    #[serde(with = "hex32")]
    pub module_hash: [u8; 32],
    /// Exported function to call.
    pub export: String,
    /// Integer arguments of the call (the original's `input`, `difficulty`).
    pub args: Vec<i64>,
    /// Fuel limit per run.
    pub fuel_max: u64,
    /// Linear-memory limit per run, in 64 KiB pages.
    pub memory_pages_max: u32,
    /// Per-run time limit, also handed to the worker as its wall-time limit.
    pub duration_ms: u64,
    /// When the runs are due.
    pub schedule: Schedule,
    /// Completion count to start from (the original's `complete`).
    pub completions_initial: u64,
    /// The `Idempotency-Key` the task was submitted with: it names this task
    /// for as long as the task is kept, and goes with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl TaskSpec {
    /// Checks every bound; a bad spec is `SchedError::BadSpec` naming the field.
    pub fn validate(&self) -> Result<(), SchedError> {
        // The id is a `TaskId`: it passed the id rules when it was made.
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(SchedError::BadSpec {
                    field: "idempotency_key",
                    reason: format!("must be 1..={IDEMPOTENCY_KEY_BYTES_MAX} bytes"),
                });
            }
        }
        let bad = |field: &'static str, reason: String| SchedError::BadSpec { field, reason };
        if self.description.len() > DESCRIPTION_BYTES_MAX {
            return Err(bad(
                "description",
                format!("over {DESCRIPTION_BYTES_MAX} bytes"),
            ));
        }
        if self.export.is_empty() || self.export.len() > EXPORT_BYTES_MAX {
            return Err(bad(
                "export",
                format!("must be 1..={EXPORT_BYTES_MAX} bytes"),
            ));
        }
        if self.args.len() > ARGS_MAX {
            return Err(bad("args", format!("more than {ARGS_MAX}")));
        }
        if self.duration_ms == 0 || self.duration_ms > DURATION_MS_MAX {
            return Err(bad("duration_ms", format!("must be 1..={DURATION_MS_MAX}")));
        }
        let s = &self.schedule;
        if s.repeats == 0 || s.repeats > REPEATS_MAX {
            return Err(bad("repeats", format!("must be 1..={REPEATS_MAX}")));
        }
        if s.start_ms > SCHEDULE_MS_MAX || s.delay_ms > SCHEDULE_MS_MAX {
            return Err(bad("start_ms/delay_ms", format!("over {SCHEDULE_MS_MAX}")));
        }
        Ok(())
    }
}

/// A task's state as the user sees it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// No run has started yet.
    Pending,
    /// A run is in flight or still to come.
    Running,
    /// Every run succeeded.
    Succeeded,
    /// Every run is over and at least one failed or timed out.
    Failed,
    /// Cancelled by the user; no new run starts.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in the order of [`TaskStatus::code`].
    pub const ALL: [TaskStatus; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// True once nothing more will happen to the task.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// A stable one-byte code (the store's status index is keyed by it).
    pub fn code(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Running => 1,
            Self::Succeeded => 2,
            Self::Failed => 3,
            Self::Cancelled => 4,
        }
    }

    /// The status with this [`TaskStatus::code`].
    pub fn from_code(code: u8) -> Option<TaskStatus> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// One run's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Due, waiting for a worker slot.
    Scheduled,
    /// Handed to a worker.
    Running,
    /// Returned results.
    Succeeded,
    /// Failed in the task (trap, fuel, bad module) or ran out of attempts.
    Failed,
    /// Exceeded the task's `duration_ms`; stopped, not retried.
    TimedOut,
    /// Stopped or dropped because the task was cancelled.
    Cancelled,
    /// Lost to a transport failure or restart; waiting for backoff and a worker.
    Retrying,
}

impl RunStatus {
    /// True for the four terminal states.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Cancelled
        )
    }
}

/// Names one run of a task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    /// The task.
    pub task: TaskId,
    /// The run's index k in 0..repeats.
    pub index: u32,
}

/// One run of a task, created when it falls due.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Run {
    /// k in 0..repeats.
    pub index: u32,
    /// Dispatches so far (1 for the first `StartRun`, 0 before it).
    pub attempt: u32,
    /// Worker of the latest attempt.
    pub worker: Option<String>,
    /// When the run fell due.
    pub scheduled_ms: u64,
    /// When the latest attempt was handed to a worker.
    pub started_ms: Option<u64>,
    /// When the run reached its terminal state.
    pub finished_ms: Option<u64>,
    /// Current state.
    pub status: RunStatus,
    /// Results of a successful run (at most `RESULTS_MAX`).
    pub results: Vec<i64>,
    /// Captured stdout (at most `STDOUT_BYTES_MAX`).
    pub stdout: String,
    /// Fuel the latest finished attempt used.
    pub fuel_used: u64,
    /// Kind of the latest error (`trap`, `fuel`, `timeout`, `transport`, ...).
    pub error_kind: Option<String>,
    /// Message of the latest error.
    pub error: Option<String>,
}

impl Run {
    /// A run that just fell due.
    pub fn due(index: u32, scheduled_ms: u64) -> Run {
        Run {
            index,
            attempt: 0,
            worker: None,
            scheduled_ms,
            started_ms: None,
            finished_ms: None,
            status: RunStatus::Scheduled,
            results: Vec::new(),
            stdout: String::new(),
            fuel_used: 0,
            error_kind: None,
            error: None,
        }
    }
}

/// A task with its runs: the unit the store writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// What to run.
    pub spec: TaskSpec,
    /// Current state.
    pub status: TaskStatus,
    /// `completions_initial` plus the runs that succeeded.
    pub completions: u64,
    /// When the scheduler accepted the task; due times count from here.
    pub submitted_ms: u64,
    /// When the task reached its final status (retention counts from here).
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// One per index, created when due, in index order.
    pub runs: Vec<Run>,
}

/// A task without its runs: what a list shows and what the store's header row
/// holds, so a summary never loads the runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskHeader {
    /// What to run.
    pub spec: TaskSpec,
    /// Current state.
    pub status: TaskStatus,
    /// `completions_initial` plus the runs that succeeded.
    pub completions: u64,
    /// When the scheduler accepted the task.
    pub submitted_ms: u64,
    /// When the task reached its final status.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Runs created so far (they are indexed 0..runs_created).
    #[serde(default)]
    pub runs_created: u32,
}

impl Task {
    /// The task without its runs.
    pub fn header(&self) -> TaskHeader {
        TaskHeader {
            spec: self.spec.clone(),
            status: self.status,
            completions: self.completions,
            submitted_ms: self.submitted_ms,
            finished_ms: self.finished_ms,
            runs_created: u32::try_from(self.runs.len()).unwrap_or(u32::MAX),
        }
    }
}

impl Task {
    /// When run `index` is due.
    pub fn due_ms(&self, index: u32) -> u64 {
        let s = &self.spec.schedule;
        self.submitted_ms
            .saturating_add(s.start_ms)
            .saturating_add(s.delay_ms.saturating_mul(u64::from(index)))
    }
}

/// A worker's load, as `Scheduler::workers` reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WorkerLoad {
    /// The worker's opaque id (e.g. a peer id).
    pub worker: String,
    /// Runs it accepts at once.
    pub slots: u32,
    /// Runs handed to it and not yet finished.
    pub in_flight: u32,
}

/// Serializes a 32-byte hash as 64 lowercase hex characters.
pub mod hex32 {
    use super::*;

    /// Writes the hash as hex text.
    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(hash))
    }

    /// Reads 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }

    /// The hash as lowercase hex.
    pub fn encode(hash: &[u8; 32]) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex characters (either case).
    pub fn decode(text: &str) -> Option<[u8; 32]> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut hash = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            hash[i] = (hi * 16 + lo) as u8;
        }
        Some(hash)
    }
}
