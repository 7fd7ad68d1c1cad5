//! Tasks, runs and their states: the data the scheduler owns and the store persists.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::SchedError;
pub use super::id::{truncated, TaskId, WorkerId, TASK_ID_CHARS_MAX};

/// Most runs one task may ask for.
pub const REPEATS_MAX: u32 = 10_000;
/// Longest description kept, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 4096;
/// Longest export name, in characters.
pub const EXPORT_CHARS_MAX: usize = 256;
/// Most integer arguments per call.
pub const ARGS_MAX: usize = 64;
/// Most results kept per run.
pub const RESULTS_MAX: usize = 64;
/// Captured stdout kept per run, in bytes; the rest is cut at a char boundary.
pub const STDOUT_BYTES_MAX: usize = 64 * 1024;
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
        check_fields(
            &self.description,
            &self.export,
            &self.args,
            self.duration_ms,
            &self.schedule,
        )
    }
}

/// The bounds of a spec's free fields, as [`TaskSpec::validate`] checks
/// them; the API checks a submission with it before anything else.
/// Lengths are in characters (Unicode scalar values), as JSON Schema's
/// `maxLength` counts them.
pub fn check_fields(
    description: &str,
    export: &str,
    args: &[i64],
    duration_ms: u64,
    schedule: &Schedule,
) -> Result<(), SchedError> {
    let bad = |field: &'static str, reason: String| SchedError::BadSpec { field, reason };
    if description.chars().count() > DESCRIPTION_CHARS_MAX {
        return Err(bad(
            "description",
            format!("over {DESCRIPTION_CHARS_MAX} characters"),
        ));
    }
    let export_chars = export.chars().count();
    if export_chars == 0 || export_chars > EXPORT_CHARS_MAX {
        return Err(bad(
            "export",
            format!("must be 1..={EXPORT_CHARS_MAX} characters"),
        ));
    }
    if args.len() > ARGS_MAX {
        return Err(bad("args", format!("more than {ARGS_MAX}")));
    }
    if duration_ms == 0 || duration_ms > DURATION_MS_MAX {
        return Err(bad("duration_ms", format!("must be 1..={DURATION_MS_MAX}")));
    }
    if schedule.repeats == 0 || schedule.repeats > REPEATS_MAX {
        return Err(bad("repeats", format!("must be 1..={REPEATS_MAX}")));
    }
    if schedule.start_ms > SCHEDULE_MS_MAX {
        return Err(bad("start_ms", format!("over {SCHEDULE_MS_MAX}")));
    }
    if schedule.delay_ms > SCHEDULE_MS_MAX {
        return Err(bad("delay_ms", format!("over {SCHEDULE_MS_MAX}")));
    }
    Ok(())
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

/// Why a run's latest attempt failed: each kind the sandbox reports
/// ([`ww::exec::ErrorKind`], under the same names) and the two the gateway
/// gives itself, [`RunErrorKind::Timeout`] and [`RunErrorKind::Transport`].
/// Stored and shown as its snake_case name; a stored name outside this list
/// is corruption (every writer is this code, and the list has only grown).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunErrorKind {
    /// The bytes are not WebAssembly (no `\0asm` magic).
    NotWasm,
    /// The module failed to parse, validate, link or instantiate.
    BadModule,
    /// The module is over the worker's size limit.
    ModuleTooLarge,
    /// The module is neither on the worker nor in the gateway's store.
    UnknownModule,
    /// The export does not exist or is not a function.
    MissingExport,
    /// The export's signature or the arguments do not fit.
    WrongSignature,
    /// The guest trapped.
    Trap,
    /// The run used up its fuel.
    FuelExhausted,
    /// The guest asked for more memory than allowed.
    MemoryLimit,
    /// The worker's own wall clock ended the run (the run is `timed_out`).
    Deadline,
    /// The guest called `proc_exit` with a nonzero code.
    Exit,
    /// The worker was asked to stop the run.
    Cancelled,
    /// A bug in the worker's sandbox.
    Internal,
    /// The gateway stopped the run past its `duration_ms` (the run is `timed_out`).
    Timeout,
    /// The attempt was lost in transport (worker gone, call failed, an
    /// impossible report): retried up to the attempt limit.
    Transport,
}

impl RunErrorKind {
    /// Every kind, the sandbox's first, in declaration order.
    pub const ALL: [RunErrorKind; 15] = [
        Self::NotWasm,
        Self::BadModule,
        Self::ModuleTooLarge,
        Self::UnknownModule,
        Self::MissingExport,
        Self::WrongSignature,
        Self::Trap,
        Self::FuelExhausted,
        Self::MemoryLimit,
        Self::Deadline,
        Self::Exit,
        Self::Cancelled,
        Self::Internal,
        Self::Timeout,
        Self::Transport,
    ];

    /// The kind's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::NotWasm => ww::exec::ErrorKind::NotWasm.as_str(),
            Self::BadModule => ww::exec::ErrorKind::BadModule.as_str(),
            Self::ModuleTooLarge => ww::exec::ErrorKind::ModuleTooLarge.as_str(),
            Self::UnknownModule => ww::exec::ErrorKind::UnknownModule.as_str(),
            Self::MissingExport => ww::exec::ErrorKind::MissingExport.as_str(),
            Self::WrongSignature => ww::exec::ErrorKind::WrongSignature.as_str(),
            Self::Trap => ww::exec::ErrorKind::Trap.as_str(),
            Self::FuelExhausted => ww::exec::ErrorKind::FuelExhausted.as_str(),
            Self::MemoryLimit => ww::exec::ErrorKind::MemoryLimit.as_str(),
            Self::Deadline => ww::exec::ErrorKind::Deadline.as_str(),
            Self::Exit => ww::exec::ErrorKind::Exit.as_str(),
            Self::Cancelled => ww::exec::ErrorKind::Cancelled.as_str(),
            Self::Internal => ww::exec::ErrorKind::Internal.as_str(),
        }
    }
}

impl From<ww::exec::ErrorKind> for RunErrorKind {
    fn from(kind: ww::exec::ErrorKind) -> Self {
        use ww::exec::ErrorKind as K;
        match kind {
            K::NotWasm => Self::NotWasm,
            K::BadModule => Self::BadModule,
            K::ModuleTooLarge => Self::ModuleTooLarge,
            K::UnknownModule => Self::UnknownModule,
            K::MissingExport => Self::MissingExport,
            K::WrongSignature => Self::WrongSignature,
            K::Trap => Self::Trap,
            K::FuelExhausted => Self::FuelExhausted,
            K::MemoryLimit => Self::MemoryLimit,
            K::Deadline => Self::Deadline,
            K::Exit => Self::Exit,
            K::Cancelled => Self::Cancelled,
            K::Internal => Self::Internal,
        }
    }
}

impl std::fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes a sandbox [`ww::exec::ErrorKind`] as its name.
pub mod exec_kind {
    use super::*;

    /// Writes the kind's name.
    pub fn serialize<S: Serializer>(kind: &ww::exec::ErrorKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    /// Reads a kind's name; any other text is refused.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ww::exec::ErrorKind, D::Error> {
        let text = String::deserialize(d)?;
        ww::exec::ErrorKind::from_str_name(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error kind {text:?}")))
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
    pub worker: Option<WorkerId>,
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
    /// Kind of the latest error.
    pub error_kind: Option<RunErrorKind>,
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
    /// The worker.
    pub worker: WorkerId,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_error_kinds_keep_the_names_stored_so_far_and_refuse_others() {
        for kind in ww::exec::ErrorKind::ALL {
            let ours = RunErrorKind::from(kind);
            assert_eq!(ours.as_str(), kind.as_str());
        }
        for kind in RunErrorKind::ALL {
            let text = serde_json::to_value(kind).unwrap();
            assert_eq!(text, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<RunErrorKind>(text).unwrap(), kind);
        }
        assert_eq!(RunErrorKind::Timeout.as_str(), "timeout");
        assert_eq!(RunErrorKind::Transport.as_str(), "transport");
        for unknown in ["", "fuel", "Trap", "timeout ", "other"] {
            assert!(serde_json::from_value::<RunErrorKind>(serde_json::json!(unknown)).is_err());
        }
    }
}
