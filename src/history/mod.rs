//! Client histories of the task API and their checker (sans-IO).
//!
//! A client that drives a gateway (the simulation's task workload, the
//! network-namespace chaos test) records every operation it makes: a
//! submission, a cancel, a read of one task, a listing, each with when it was
//! invoked and when its answer came (both on the client's clock), and what the
//! answer was: an observation, a definite failure, or nothing known (a
//! timeout, a dropped connection: the operation may or may not have taken
//! effect). [`check`] then judges the whole history against the API's
//! promises and names the operations behind every violation.
//!
//! Nothing here does I/O or reads a clock: times are whatever the recorder
//! stamped, so a simulation stays deterministic.

mod check;

pub use check::{check, CheckConfig, Report, Rule, Violation};

use std::fmt;

/// Whether a task or run status is terminal.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "timed_out")
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `POST /tasks`: `id` when the client chose the task's id, the
    /// `Idempotency-Key` it sent.
    Submit {
        /// The id the client asked for, if any (else the gateway picks one).
        id: Option<String>,
        /// The submission's idempotency key (retries of one submission share it).
        idempotency_key: String,
    },
    /// `DELETE /tasks/{id}`: cancel the task.
    Cancel {
        /// The task.
        id: String,
    },
    /// `GET /tasks/{id}`: read the task and its runs.
    Read {
        /// The task.
        id: String,
    },
    /// `GET /tasks`: list the tasks.
    List,
}

/// A run as a read showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    /// The run's index in its task.
    pub index: u32,
    /// Its status (`scheduled`, `running`, `succeeded`, ...).
    pub status: String,
    /// Dispatches so far.
    pub attempt: u32,
    /// When its latest attempt started (the gateway's clock, ms).
    pub started_ms: Option<u64>,
    /// When it finished (the gateway's clock, ms).
    pub finished_ms: Option<u64>,
    /// Its results.
    pub results: Vec<i64>,
}

/// A task as a read showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// The task's id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Runs created so far (`runs_total`), when the answer says.
    pub runs_total: Option<u32>,
    /// The runs the answer held.
    pub runs: Vec<RunView>,
}

/// One task of a listing: its id and the idempotency key the client can tell
/// from it (the client puts the key in the description), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The task's id.
    pub id: String,
    /// The submission key the client recognises, if any.
    pub key: Option<String>,
}

/// What a successful answer showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A submission acknowledged: the task it names (new, the same task again
    /// for a retried key, or an existing task of the id asked for).
    Submitted {
        /// The task's id.
        id: String,
    },
    /// A cancel acknowledged: the task's status in the answer (`cancelled`, or
    /// the terminal status it already had).
    Cancelled {
        /// The status answered.
        status: String,
    },
    /// A read's answer.
    Task(TaskView),
    /// A read answered 404.
    NotFound,
    /// A listing's answer.
    Listing(Vec<Listed>),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A definite answer and what it showed.
    Ok(Observed),
    /// A definite refusal (a 4xx or 5xx answer), with its reason. For a
    /// submission the checker does not rely on it: the task may exist or not.
    Failed(String),
    /// No answer: it may have taken effect or not.
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client made it (for the rendering).
    pub client: u32,
    /// What it asked for.
    pub kind: OpKind,
    /// When it was sent (the client's clock, ms).
    pub invoked_ms: u64,
    /// When its answer came; `None` if none came.
    pub completed_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// The task this operation is about, if one: the id asked for, or the one
    /// a submission's answer named.
    pub fn task_id(&self) -> Option<&str> {
        match (&self.kind, &self.outcome) {
            (OpKind::Cancel { id } | OpKind::Read { id }, _) => Some(id),
            (_, Outcome::Ok(Observed::Submitted { id })) => Some(id),
            (OpKind::Submit { id, .. }, _) => id.as_deref(),
            (OpKind::List, _) => None,
        }
    }

    /// The task state this operation showed, if a read answered with one.
    pub fn task_view(&self) -> Option<&TaskView> {
        match &self.outcome {
            Outcome::Ok(Observed::Task(view)) => Some(view),
            _ => None,
        }
    }

    /// Whether this operation was answered before `other` was sent (real-time
    /// order; concurrent operations are ordered neither way).
    pub fn precedes(&self, other: &Operation) -> bool {
        self.completed_ms
            .is_some_and(|done| done < other.invoked_ms)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = match self.completed_ms {
            Some(ms) => format!("{ms}"),
            None => "-".to_string(),
        };
        write!(f, "client {} [{}..{done}] ", self.client, self.invoked_ms)?;
        match &self.kind {
            OpKind::Submit {
                id,
                idempotency_key,
            } => {
                write!(f, "submit key={idempotency_key}")?;
                if let Some(id) = id {
                    write!(f, " id={id}")?;
                }
            }
            OpKind::Cancel { id } => write!(f, "cancel {id}")?,
            OpKind::Read { id } => write!(f, "read {id}")?,
            OpKind::List => write!(f, "list")?,
        }
        match &self.outcome {
            Outcome::Ok(Observed::Submitted { id }) => write!(f, " -> ok {id}"),
            Outcome::Ok(Observed::Cancelled { status }) => write!(f, " -> ok {status}"),
            Outcome::Ok(Observed::NotFound) => write!(f, " -> 404"),
            Outcome::Ok(Observed::Listing(items)) => write!(f, " -> {} tasks", items.len()),
            Outcome::Ok(Observed::Task(view)) => {
                write!(f, " -> {}", view.status)?;
                for run in &view.runs {
                    write!(
                        f,
                        " #{}:{}/a{}/s{}/f{}/{:?}",
                        run.index,
                        run.status,
                        run.attempt,
                        run.started_ms.map_or("-".into(), |v| v.to_string()),
                        run.finished_ms.map_or("-".into(), |v| v.to_string()),
                        run.results
                    )?;
                }
                Ok(())
            }
            Outcome::Failed(reason) => write!(f, " -> failed: {reason}"),
            Outcome::Unknown => write!(f, " -> unknown"),
        }
    }
}

/// A client history: operations in the order they were recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Appends `op`; returns its index.
    pub fn record(&mut self, op: Operation) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// The operations recorded, in order.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Parses a task answer of the REST API (`GET /tasks/{id}`, `TaskDetail`
/// JSON) into a [`TaskView`]; `None` if it has no id or status.
pub fn task_view_from_json(task: &serde_json::Value) -> Option<TaskView> {
    let id = task["id"].as_str()?.to_string();
    let status = task["status"].as_str()?.to_string();
    let runs = task["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|run| {
            Some(RunView {
                index: u32::try_from(run["index"].as_u64()?).ok()?,
                status: run["status"].as_str()?.to_string(),
                attempt: u32::try_from(run["attempt"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
                started_ms: run["started_ms"].as_u64(),
                finished_ms: run["finished_ms"].as_u64(),
                results: run["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_i64)
                    .collect(),
            })
        })
        .collect();
    let runs_total = task["runs_total"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok());
    Some(TaskView {
        id,
        status,
        runs_total,
        runs,
    })
}
