//! Task ids: the one name a task has in the API, the store and the scheduler.
//!
//! A [`TaskId`] can only be made by parsing ([`TaskId::parse`], or serde,
//! which parses too), so holding one means holding text that passed the
//! rules: whatever reads an id from outside (a request, a stored row, a
//! database column) parses it and refuses what fails.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// Longest task id, in characters (all ASCII, so also in bytes).
pub const TASK_ID_CHARS_MAX: usize = 128;

/// The id rules as a regular expression (ECMA-262, as OpenAPI and JSON
/// Schema use): what [`TaskId::parse`] accepts, exactly.
pub const TASK_ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,128}$";

/// A task's id: 1..=128 characters from `[A-Za-z0-9._-]`
/// ([`TASK_ID_PATTERN`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

/// Text refused as a task id; nothing was created from it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error(
    "task id {id:?} rejected (1..={TASK_ID_CHARS_MAX} chars of [A-Za-z0-9._-]); nothing changed"
)]
pub struct TaskIdError {
    /// The offending text, cut to a bounded length.
    pub id: String,
}

/// Whether `text` passes the id rules.
fn valid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= TASK_ID_CHARS_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl TaskId {
    /// Checks the text and wraps a copy of it.
    pub fn parse(text: &str) -> Result<TaskId, TaskIdError> {
        if !valid(text) {
            return Err(TaskIdError {
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

impl TryFrom<String> for TaskId {
    type Error = TaskIdError;

    /// Checks the text and keeps it (no copy).
    fn try_from(text: String) -> Result<TaskId, TaskIdError> {
        if valid(&text) {
            Ok(TaskId(text))
        } else {
            Err(TaskIdError {
                id: truncated(&text, TASK_ID_CHARS_MAX + 8),
            })
        }
    }
}

impl std::str::FromStr for TaskId {
    type Err = TaskIdError;

    fn from_str(text: &str) -> Result<TaskId, TaskIdError> {
        TaskId::parse(text)
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl utoipa::PartialSchema for TaskId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TASK_ID_PATTERN))
            .min_length(Some(1))
            .max_length(Some(TASK_ID_CHARS_MAX))
            .description(Some(
                "A task's id: 1 to 128 characters from `[A-Za-z0-9._-]`",
            ))
            .examples(["puzzle-1"])
            .into()
    }
}

impl utoipa::ToSchema for TaskId {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parsed_text_becomes_an_id_and_serde_parses_too() {
        assert_eq!(TaskId::parse("a.b_c-9").unwrap().as_str(), "a.b_c-9");
        assert!(TaskId::parse(&"x".repeat(TASK_ID_CHARS_MAX)).is_ok());
        for bad in [
            "",
            "a b",
            "ü",
            "a/b",
            "a\0",
            &"x".repeat(TASK_ID_CHARS_MAX + 1),
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
            assert!(TaskId::try_from(bad.to_string()).is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<TaskId>(serde_json::json!(bad)).is_err(),
                "{bad:?}"
            );
        }
        let id: TaskId = serde_json::from_str("\"t-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"t-1\"");
        assert_eq!(id.to_string(), "t-1");
        assert_eq!(String::from(id), "t-1");
    }
}
