//! Queries over the routing table: which records, in peer order, and how many.
//!
//! Unlike the Go original, the limit is honoured where the records are read, and
//! a host match is exact unless asked for a prefix (the original had them swapped).

use thiserror::Error;

use super::{Record, RoutingTable};
use crate::transport::PeerId;

/// Longest selector text [`parse_selector`] accepts, in bytes.
pub const SELECTOR_BYTES_MAX: usize = 512;

/// A text to compare with, whole or as a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// The text to compare with.
    pub value: String,
    /// Whether `value` need only be a prefix of the field.
    pub prefix: bool,
}

impl Match {
    /// Matches a field equal to `value`.
    pub fn exact(value: impl Into<String>) -> Self {
        Match {
            value: value.into(),
            prefix: false,
        }
    }

    /// Matches a field starting with `value`.
    pub fn prefix(value: impl Into<String>) -> Self {
        Match {
            value: value.into(),
            prefix: true,
        }
    }

    fn matches(&self, field: &str) -> bool {
        if self.prefix {
            field.starts_with(self.value.as_str())
        } else {
            field == self.value
        }
    }

    /// Compares with the text `key=value` without building it: keys never contain
    /// `=`, so that text's first `=` is the one after the key.
    fn matches_pair(&self, key: &str, value: &str) -> bool {
        match self.value.split_once('=') {
            Some((want_key, want_value)) => {
                key == want_key
                    && if self.prefix {
                        value.starts_with(want_value)
                    } else {
                        value == want_value
                    }
            }
            // A pattern without `=` can only be a prefix of the key part.
            None => self.prefix && key.starts_with(self.value.as_str()),
        }
    }
}

/// Which records a query selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every record.
    All,
    /// By peer id text (base58).
    Peer(Match),
    /// By instance id as 16 lowercase hex digits.
    Instance(Match),
    /// By host name.
    Host(Match),
    /// By any metadata pair, as `key=value` text.
    Meta(Match),
}

/// A selector and an optional cap on how many records come back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// Which records.
    pub selector: Selector,
    /// At most this many records (the first ones in peer order); `None` means all.
    pub limit: Option<usize>,
}

impl Query {
    /// Every record, unlimited.
    pub fn all() -> Self {
        Query::new(Selector::All)
    }

    /// The records `selector` picks, unlimited.
    pub fn new(selector: Selector) -> Self {
        Query {
            selector,
            limit: None,
        }
    }

    /// The same query returning at most `limit` records.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Why selector text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// The text is empty.
    #[error(
        "selector is empty (expected all, peer=, peer^=, instance=, host=, host^=, meta=, meta^=)"
    )]
    Empty,
    /// The text is longer than [`SELECTOR_BYTES_MAX`].
    #[error("selector is {len_bytes} bytes, more than {SELECTOR_BYTES_MAX}")]
    TooLong {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// The part before `=` / `^=` is not a known selector kind.
    #[error("unknown selector {text:?} (expected all, peer=, peer^=, instance=, host=, host^=, meta=, meta^=)")]
    Unknown {
        /// The text given.
        text: String,
    },
    /// Nothing follows `=` / `^=`.
    #[error("selector {kind} has no value")]
    MissingValue {
        /// The selector kind.
        kind: &'static str,
    },
    /// An exact `peer=` value is not a peer id.
    #[error("selector peer={text:?} is not a peer id")]
    InvalidPeer {
        /// The text given.
        text: String,
    },
    /// An `instance` value is not up to 16 hex digits (exactly 16 for an exact match).
    #[error("selector instance value {text:?} is not {expected} hex digits")]
    InvalidInstance {
        /// The text given.
        text: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A `meta` value has no `=` or an empty key.
    #[error("selector meta value {text:?} is not KEY=VALUE with a non-empty key")]
    InvalidMeta {
        /// The text given.
        text: String,
    },
}

/// Parses CLI selector text: `all`, `peer=ID`, `peer^=PREFIX`, `instance=HEX`,
/// `instance^=HEX`, `host=NAME`, `host^=PREFIX`, `meta=KEY=VALUE`, `meta^=KEY=PREFIX`.
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    if text.len() > SELECTOR_BYTES_MAX {
        return Err(SelectorError::TooLong {
            len_bytes: text.len(),
        });
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(SelectorError::Empty);
    }
    if text == "all" {
        return Ok(Selector::All);
    }
    let unknown = || SelectorError::Unknown {
        text: text.to_string(),
    };
    let (kind, value) = text.split_once('=').ok_or_else(unknown)?;
    let (kind, prefix) = match kind.strip_suffix('^') {
        Some(kind) => (kind, true),
        None => (kind, false),
    };
    let kind: &'static str = match kind {
        "peer" => "peer",
        "instance" => "instance",
        "host" => "host",
        "meta" => "meta",
        _ => return Err(unknown()),
    };
    if value.is_empty() {
        return Err(SelectorError::MissingValue { kind });
    }
    let matcher = Match {
        value: value.to_string(),
        prefix,
    };
    match kind {
        "peer" => {
            if !prefix && value.parse::<PeerId>().is_err() {
                return Err(SelectorError::InvalidPeer {
                    text: value.to_string(),
                });
            }
            Ok(Selector::Peer(matcher))
        }
        "instance" => {
            let expected = if prefix { "1 to 16" } else { "16" };
            let hex = value.bytes().all(|b| b.is_ascii_hexdigit());
            let len_ok = if prefix {
                value.len() <= 16
            } else {
                value.len() == 16
            };
            if !hex || !len_ok {
                return Err(SelectorError::InvalidInstance {
                    text: value.to_string(),
                    expected,
                });
            }
            // Ids render in lowercase; accept either case from a person typing.
            Ok(Selector::Instance(Match {
                value: value.to_ascii_lowercase(),
                prefix,
            }))
        }
        "host" => Ok(Selector::Host(matcher)),
        _ => match value.split_once('=') {
            Some((key, _)) if !key.is_empty() => Ok(Selector::Meta(matcher)),
            _ => Err(SelectorError::InvalidMeta {
                text: value.to_string(),
            }),
        },
    }
}

impl RoutingTable {
    /// The records `query` selects, in lexicographic order of peer id text, at most
    /// `query.limit` of them. Records past their deadline but not yet expired count.
    pub fn query(&self, query: &Query) -> Vec<Record> {
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Vec::new();
        }
        let take = |records: &mut dyn Iterator<Item = &Record>| -> Vec<Record> {
            records.take(limit).cloned().collect()
        };
        match &query.selector {
            Selector::All => take(&mut self.iter()),
            Selector::Peer(m) if m.prefix => take(&mut self.with_peer_prefix(&m.value)),
            Selector::Peer(m) => take(&mut self.by_peer_text(&m.value).into_iter()),
            Selector::Instance(m) => take(
                &mut self
                    .iter()
                    .filter(|r| m.matches(&r.heartbeat.instance_hex())),
            ),
            Selector::Host(m) => take(&mut self.iter().filter(|r| m.matches(r.heartbeat.host()))),
            Selector::Meta(m) => take(&mut self.iter().filter(|r| {
                r.heartbeat
                    .meta()
                    .iter()
                    .any(|(key, value)| m.matches_pair(key, value))
            })),
        }
    }
}
