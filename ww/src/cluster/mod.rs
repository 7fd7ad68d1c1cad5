//! Cluster membership: heartbeats, the routing table built from them, and queries.
//!
//! Everything here is sans-IO: callers pass bytes in and the current time as
//! `now_ms`, so the same code runs under a real clock and in simulation.

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
