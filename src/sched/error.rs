//! Errors of the scheduler core; each says what did (or did not) change.

use super::types::TaskId;

/// A command the scheduler refused; the scheduler's state is unchanged.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SchedError {
    /// The id is empty, too long or has a character outside `[A-Za-z0-9._-]`.
    #[error("task id {id:?} rejected (1..=128 chars of [A-Za-z0-9._-]); nothing changed")]
    BadId {
        /// The offending text, cut to a bounded length.
        id: String,
    },
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
    /// The task table holds `tasks_max` tasks.
    #[error("task table full ({tasks_max} tasks); task not accepted")]
    Full {
        /// The configured limit.
        tasks_max: usize,
    },
    /// Only a finished task may be forgotten.
    #[error("task {id} is not finished; it was kept")]
    NotFinished {
        /// The id.
        id: TaskId,
    },
}
