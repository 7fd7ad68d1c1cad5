//! Anchors: a path tree over the cluster where processes leave values and
//! capabilities for others.
//!
//! The root `/` is the membership view: one `/<peer id>` per host. Each host
//! serves the tree below its own id ([`AnchorTree`], bounded by
//! [`AnchorLimits`]) as the `Anchor` capability on [`ANCHOR_PROTOCOL`].
//! Nothing is replicated (PA/EL): a host's anchors are read and written at
//! that host, in the order its calls arrive; they live in its memory and go
//! when it stops; under a partition only the host's side reaches them, and
//! each side's `/` lists the hosts in its own view.
//!
//! # Example
//!
//! The tree behind a host's anchors, sans-IO: values (or capabilities) at
//! paths, their parents made on the way.
//!
//! ```
//! use ww::anchor::{AnchorLimits, AnchorTree, Held};
//!
//! let mut tree: AnchorTree<()> = AnchorTree::new(AnchorLimits::default());
//! let path = vec!["config".to_string(), "mode".to_string()];
//! tree.set(&path, Held::Value(b"fast".to_vec()))?;
//! assert!(matches!(tree.get(&path)?, Held::Value(v) if v == b"fast"));
//! assert_eq!(tree.list(&path[..1])?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod path;
mod server;
mod tree;

pub use path::{AnchorPath, PathError};
pub use server::{anchor_protocol, AnchorServer, ANCHOR_PROTOCOL};
pub use tree::{AnchorError, AnchorLimits, AnchorTree, ChildInfo, Held, HeldKind};
