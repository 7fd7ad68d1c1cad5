//! Cluster membership: heartbeats, the routing table built from them, and queries.
//!
//! Everything here is sans-IO: callers pass bytes in and the current time as
//! `now_ms`, so the same code runs under a real clock and in simulation.
//!
//! # Example
//!
//! The routing table is sans-IO: heartbeats and the time in, the view out.
//!
//! ```
//! use ww::cluster::{Applied, Heartbeat, RoutingTable, TableConfig};
//! use ww::transport::Identity;
//!
//! let mut table = RoutingTable::new(TableConfig::default());
//! let peer = Identity::generate().peer_id();
//! let now_ms = 1_000_000;
//! let beat = Heartbeat::new(6_000, 1, 1, "node-a", Vec::new())?.with_sent_ms(now_ms);
//! assert_eq!(table.apply(now_ms, peer, beat)?, Applied::Joined);
//! assert_eq!(table.get(&peer).map(|r| r.joined_ms), Some(now_ms));
//! // Without another heartbeat within its TTL, the peer leaves the view.
//! let left = table.expire(now_ms + 6_000);
//! assert_eq!(left.len(), 1);
//! assert_eq!(table.len(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod heartbeat;
mod membership;
mod query;
mod table;
mod tombstones;

pub use heartbeat::{
    parse_meta, Heartbeat, HeartbeatError, HEARTBEAT_BYTES_MAX, HEARTBEAT_TAG_DOMAIN,
    HEARTBEAT_VERSION, HOST_BYTES_MAX, META_KEY_BYTES_MAX, META_PAIRS_MAX, META_VALUE_BYTES_MAX,
    TTL_MS_MAX, TTL_MS_MIN,
};
pub use membership::{
    Membership, MembershipConfig, MembershipError, MembershipStats, Watch, EXPIRY_TICK_MS,
    HEARTBEATS_PER_TTL, WATCH_BUFFER,
};
pub use query::{parse_selector, Match, Query, Selector, SelectorError, SELECTOR_BYTES_MAX};
pub use table::{
    Applied, LeaveReason, Left, Record, Rejected, RoutingTable, TableConfig, ViewEvent,
    EVENTS_MAX_DEFAULT, PEERS_MAX_DEFAULT, RETIRED_PER_PEER_MAX,
};
pub use tombstones::TOMBSTONES_MAX;
