//! Ids: [`TaskId`], the one name a task has in the API, the store and the
//! scheduler, and [`WorkerId`], the name of a worker (its peer id).
//!
//! Neither can be made from free text without parsing ([`TaskId::parse`],
//! [`WorkerId::parse`], or serde, which parses too), so holding one means
//! holding a name that passed the rules: whatever reads an id from outside
//! (a request, a stored row, a database column) parses it and refuses what
//! fails.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use ww::transport::PeerId;

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

/// A worker's name: the peer id it registered under, which the transport
/// authenticated. Shown and stored as the peer id's text (base58); text read
/// back that is not a peer id is refused.
#[derive(Clone)]
pub struct WorkerId {
    peer: PeerId,
    /// `peer`'s canonical text, kept: workers are compared, ordered and
    /// shown by it, as when they were named by text.
    text: Arc<str>,
}

/// Text refused as a worker id (not a peer id).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("worker id {id:?} is not a peer id: {reason}")]
pub struct WorkerIdError {
    /// The offending text, cut to a bounded length.
    pub id: String,
    /// Why.
    pub reason: String,
}

impl WorkerId {
    /// Parses a peer id's text.
    pub fn parse(text: &str) -> Result<WorkerId, WorkerIdError> {
        let peer: PeerId =
            text.parse()
                .map_err(|e: ww::transport::TransportError| WorkerIdError {
                    id: truncated(text, 128),
                    reason: truncated(&e.to_string(), 256),
                })?;
        Ok(WorkerId::from(peer))
    }

    /// The worker's peer id.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The peer id's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<PeerId> for WorkerId {
    fn from(peer: PeerId) -> Self {
        WorkerId {
            peer,
            text: peer.to_string().into(),
        }
    }
}

impl TryFrom<String> for WorkerId {
    type Error = WorkerIdError;

    fn try_from(text: String) -> Result<WorkerId, WorkerIdError> {
        WorkerId::parse(&text)
    }
}

impl std::str::FromStr for WorkerId {
    type Err = WorkerIdError;

    fn from_str(text: &str) -> Result<WorkerId, WorkerIdError> {
        WorkerId::parse(text)
    }
}

impl From<WorkerId> for String {
    fn from(id: WorkerId) -> String {
        id.text.to_string()
    }
}

impl AsRef<str> for WorkerId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

// Equality, order and hash by the text, which is a function of the peer id:
// the scheduler's placement breaks ties in this order, as it did by name.
impl PartialEq for WorkerId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for WorkerId {}

impl PartialOrd for WorkerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WorkerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl std::hash::Hash for WorkerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.text)
    }
}

impl std::fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerId({})", self.text)
    }
}

impl Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        WorkerId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for WorkerId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A worker's libp2p peer id (base58)"))
            .into()
    }
}

impl utoipa::ToSchema for WorkerId {}

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

    #[test]
    fn a_worker_id_is_a_peer_id_and_nothing_else() {
        let peer = ww::transport::Identity::from_secret([3; 32]).peer_id();
        let id = WorkerId::from(peer);
        assert_eq!(id.as_str(), peer.to_string());
        assert_eq!(WorkerId::parse(id.as_str()).unwrap(), id);
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(json, serde_json::json!(peer.to_string()));
        assert_eq!(
            serde_json::from_value::<WorkerId>(json).unwrap().peer(),
            peer
        );
        for bad in ["", "w", "worker-1", "12D3KooW", &"1".repeat(300)] {
            assert!(WorkerId::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<WorkerId>(serde_json::json!(bad)).is_err());
        }
    }
}
