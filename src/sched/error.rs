//! Errors of the scheduler core; each says what did (or did not) change.

use super::id::{TaskId, TaskIdError};

/// A command the scheduler refused; the scheduler's state is unchanged.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SchedError {
    /// The id is empty, too long or has a character outside `[A-Za-z0-9._-]`.
    #[error(transparent)]
    BadId(#[from] TaskIdError),
    /// A field of the spec is out of bounds.
    #[error("task spec field {field} rejected: {reason}; nothing changed")]
    BadSpec {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A task with this id already exists.
    #[error("task {id} already exists; nothing changed")]
    Exists {
        /// The id.
        id: TaskId,
    },
    /// No task has this id.
    #[error("task {id} not found; nothing changed")]
    NotFound {
        /// The id.
        id: TaskId,
    },
    /// `open_tasks_max` tasks are unfinished: a new one waits until some finish.
    #[error("{open_tasks_max} tasks are unfinished, the most held at once; task not accepted")]
    Busy {
        /// The configured limit.
        open_tasks_max: usize,
    },
    /// Only a finished task may be forgotten.
    #[error("task {id} is not finished; it was kept")]
    NotFinished {
        /// The id.
        id: TaskId,
    },
}
