//! One host's anchor tree (sans-IO): named paths, each holding nothing, bytes
//! or a capability, within fixed bounds.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Bounds on one host's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorLimits {
    /// Segments in a path.
    pub depth_max: usize,
    /// Bytes in one segment.
    pub segment_bytes_max: usize,
    /// Paths in the tree, parents included.
    pub paths_max: usize,
    /// Bytes of one value.
    pub value_bytes_max: usize,
    /// Bytes of every value together.
    pub values_bytes_max: usize,
    /// Children one `list` returns at most.
    pub list_max: usize,
}

impl Default for AnchorLimits {
    /// Depth 16, segments of 255 bytes, 4,096 paths, values of 64 KiB and 16
    /// MiB in all, lists of 1,024.
    fn default() -> Self {
        AnchorLimits {
            depth_max: 16,
            segment_bytes_max: 255,
            paths_max: 4_096,
            value_bytes_max: 64 * 1024,
            values_bytes_max: 16 * 1024 * 1024,
            list_max: 1_024,
        }
    }
}

/// Why a call on the tree failed; in every case the tree is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// A segment is empty, too long, `.`/`..`, or holds `/` or a control character.
    #[error("path segment {segment:?} is not allowed: {why}; nothing changed")]
    BadSegment {
        /// The segment as given.
        segment: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The path has more segments than allowed.
    #[error("path has {depth} segments, at most {max} allowed; nothing changed")]
    TooDeep {
        /// Segments in the path.
        depth: usize,
        /// The most allowed.
        max: usize,
    },
    /// Setting the root: only paths below it hold anything.
    #[error("the root holds nothing itself; name a path below it; nothing changed")]
    Root,
    /// No such path.
    #[error("no anchor at /{path}")]
    NotFound {
        /// The path, segments joined by `/`.
        path: String,
    },
    /// The tree holds as many paths as allowed.
    #[error("the tree already holds {max} paths; /{path} was not created")]
    Full {
        /// The path that was not created.
        path: String,
        /// The most paths allowed.
        max: usize,
    },
    /// The value is larger than one value may be.
    #[error("value is {bytes} bytes, at most {max} allowed; nothing changed")]
    ValueTooLarge {
        /// The value's size.
        bytes: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Values together would exceed their budget.
    #[error("values would take {bytes} bytes, at most {max} allowed; nothing changed")]
    ValuesFull {
        /// What they would take.
        bytes: usize,
        /// The budget.
        max: usize,
    },
}

/// What a path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held<C> {
    /// Nothing: the path is only a parent.
    Nothing,
    /// Bytes.
    Value(Vec<u8>),
    /// A capability (in a served tree, a Cap'n Proto client).
    Capability(C),
}

/// One child as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its last segment.
    pub name: String,
    /// What it holds.
    pub holds: HeldKind,
    /// How many children it has.
    pub children: usize,
}

/// What kind of thing a path holds, without the thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldKind {
    /// Only a parent.
    Nothing,
    /// Bytes.
    Value,
    /// A capability.
    Capability,
}

/// A host's paths; parents exist while they have children or hold something.
#[derive(Debug)]
pub struct AnchorTree<C> {
    limits: AnchorLimits,
    /// Every path (the root excluded), parents before children.
    paths: BTreeMap<Vec<String>, Held<C>>,
    values_bytes: usize,
}

impl<C: Clone> AnchorTree<C> {
    /// An empty tree bounded by `limits`.
    pub fn new(limits: AnchorLimits) -> Self {
        AnchorTree {
            limits,
            paths: BTreeMap::new(),
            values_bytes: 0,
        }
    }

    /// Checks every segment of `path` and its depth.
    pub fn check_path(&self, path: &[String]) -> Result<(), AnchorError> {
        if path.len() > self.limits.depth_max {
            return Err(AnchorError::TooDeep {
                depth: path.len(),
                max: self.limits.depth_max,
            });
        }
        for segment in path {
            let why = if segment.is_empty() {
                Some("empty")
            } else if segment.len() > self.limits.segment_bytes_max {
                Some("too long")
            } else if segment == "." || segment == ".." {
                Some("`.` and `..` are reserved")
            } else if segment.contains('/') {
                Some("contains `/`")
            } else if segment.chars().any(char::is_control) {
                Some("contains a control character")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(AnchorError::BadSegment {
                    segment: segment.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// The children of `path` (the root if empty), in name order, at most the list bound.
    pub fn list(&self, path: &[String]) -> Result<Vec<ChildInfo>, AnchorError> {
        self.check_path(path)?;
        if !path.is_empty() && !self.paths.contains_key(path) {
            return Err(not_found(path));
        }
        let children = self
            .below(path)
            .filter(|(key, _)| key.len() == path.len() + 1)
            .take(self.limits.list_max)
            .map(|(key, held)| ChildInfo {
                name: key[path.len()].clone(),
                holds: kind(held),
                children: self
                    .below(key)
                    .filter(|(k, _)| k.len() == key.len() + 1)
                    .count(),
            })
            .collect();
        Ok(children)
    }

    /// What `path` holds.
    pub fn get(&self, path: &[String]) -> Result<Held<C>, AnchorError> {
        self.check_path(path)?;
        if path.is_empty() {
            return Ok(Held::Nothing);
        }
        self.paths.get(path).cloned().ok_or_else(|| not_found(path))
    }

    /// Makes `path` hold `held`, creating it and its parents as needed.
    pub fn set(&mut self, path: &[String], held: Held<C>) -> Result<(), AnchorError> {
        self.check_path(path)?;
        if path.is_empty() {
            return Err(AnchorError::Root);
        }
        let new_bytes = match &held {
            Held::Value(bytes) if bytes.len() > self.limits.value_bytes_max => {
                return Err(AnchorError::ValueTooLarge {
                    bytes: bytes.len(),
                    max: self.limits.value_bytes_max,
                })
            }
            Held::Value(bytes) => bytes.len(),
            _ => 0,
        };
        let old_bytes = match self.paths.get(path) {
            Some(Held::Value(bytes)) => bytes.len(),
            _ => 0,
        };
        let values_bytes = self.values_bytes - old_bytes + new_bytes;
        if values_bytes > self.limits.values_bytes_max {
            return Err(AnchorError::ValuesFull {
                bytes: values_bytes,
                max: self.limits.values_bytes_max,
            });
        }
        let missing = (1..=path.len())
            .filter(|len| !self.paths.contains_key(&path[..*len]))
            .count();
        if self.paths.len() + missing > self.limits.paths_max {
            return Err(AnchorError::Full {
                path: path.join("/"),
                max: self.limits.paths_max,
            });
        }
        for len in 1..path.len() {
            self.paths
                .entry(path[..len].to_vec())
                .or_insert(Held::Nothing);
        }
        self.paths.insert(path.to_vec(), held);
        self.values_bytes = values_bytes;
        self.debug_check();
        Ok(())
    }

    /// Removes `path` and everything below it; how many paths went (the root: all).
    pub fn remove(&mut self, path: &[String]) -> Result<usize, AnchorError> {
        self.check_path(path)?;
        if !path.is_empty() && !self.paths.contains_key(path) {
            return Err(not_found(path));
        }
        let doomed: Vec<Vec<String>> = self
            .below(path)
            .map(|(key, _)| key.clone())
            .chain((!path.is_empty()).then(|| path.to_vec()))
            .collect();
        for key in &doomed {
            if let Some(Held::Value(bytes)) = self.paths.remove(key) {
                self.values_bytes -= bytes.len();
            }
        }
        self.debug_check();
        Ok(doomed.len())
    }

    /// Paths held, parents included.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the tree holds no path.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Every path strictly below `path`, in order.
    fn below<'a>(
        &'a self,
        path: &'a [String],
    ) -> impl Iterator<Item = (&'a Vec<String>, &'a Held<C>)> + 'a {
        // Keys sharing a prefix are contiguous in a BTreeMap of Vec<String>.
        self.paths
            .range::<[String], _>((Bound::Excluded(path), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(path))
    }

    /// Parents exist for every path; the byte count matches (debug builds).
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            let bytes: usize = self
                .paths
                .values()
                .map(|held| match held {
                    Held::Value(bytes) => bytes.len(),
                    _ => 0,
                })
                .sum();
            debug_assert_eq!(bytes, self.values_bytes, "value bytes counted");
            debug_assert!(self.paths.len() <= self.limits.paths_max);
            for key in self.paths.keys() {
                debug_assert!(
                    key.len() == 1 || self.paths.contains_key(&key[..key.len() - 1]),
                    "every path has its parent"
                );
            }
        }
    }
}

fn kind<C>(held: &Held<C>) -> HeldKind {
    match held {
        Held::Nothing => HeldKind::Nothing,
        Held::Value(_) => HeldKind::Value,
        Held::Capability(_) => HeldKind::Capability,
    }
}

fn not_found(path: &[String]) -> AnchorError {
    AnchorError::NotFound {
        path: path.join("/"),
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
