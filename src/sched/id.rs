//! Task ids: the one name a task has in the API, the store and the scheduler.

use serde::{Deserialize, Serialize};

/// Longest task id, in characters.
pub const TASK_ID_CHARS_MAX: usize = 128;

/// A task's id: 1..=128 characters from `[A-Za-z0-9._-]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct TaskId(pub String);

/// Text refused as a task id; nothing was created from it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error(
    "task id {id:?} rejected (1..={TASK_ID_CHARS_MAX} chars of [A-Za-z0-9._-]); nothing changed"
)]
pub struct BadTaskId {
    /// The offending text, cut to a bounded length.
    pub id: String,
}

impl TaskId {
    /// Checks the text and wraps it.
    pub fn parse(text: &str) -> Result<TaskId, BadTaskId> {
        let chars_ok = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if text.is_empty() || text.len() > TASK_ID_CHARS_MAX || !chars_ok {
            return Err(BadTaskId {
                id: truncated(text, TASK_ID_CHARS_MAX + 8),
            });
        }
        Ok(TaskId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cuts `text` to at most `bytes_max` bytes at a char boundary.
pub fn truncated(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_owned();
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
