//! What each fuzz target checks, as plain functions of the input bytes, so
//! that `cargo fuzz` (the `fuzz_targets/` entry points) and the regression
//! test (`tests/regressions.rs`, which replays every checked-in input) run
//! the very same checks. A check fails by panicking.
//!
//! - [`discovery_packet`], [`heartbeat`]: the hand-written decoders of what
//!   arrives by UDP; whatever decodes re-encodes to the same value.
//! - [`task_spec`], [`run_report`]: the Cap'n Proto readers of a call's spec
//!   (worker side) and a run's report (gateway side).
//! - [`rpc_worker`], [`rpc_channel`]: arbitrary bytes as the stream of an RPC
//!   connection to a `Worker` or a channel server.
//! - [`http_router`]: an arbitrary request into the gateway's locked router.
//! - [`sandbox`]: a module made by `wasm-smith` run under arbitrary limits.
//! - [`dht_record`]: a DHT record as a holder sends it, and an anchor path.

mod codecs;
mod http;
mod rpc;
mod sandbox;

pub use codecs::{dht_record, discovery_packet, heartbeat, run_report, task_spec};
pub use http::{http_router, remove_http_data};
pub use rpc::{rpc_channel, rpc_worker};
pub use sandbox::sandbox;

/// A target's check: panics when the input breaks what it must hold.
pub type Check = fn(&[u8]);

/// The fuzz targets by name, for the regression test.
pub const TARGETS: [(&str, Check); 9] = [
    ("discovery_packet", discovery_packet),
    ("heartbeat", heartbeat),
    ("task_spec", task_spec),
    ("run_report", run_report),
    ("rpc_worker", rpc_worker),
    ("rpc_channel", rpc_channel),
    ("http_router", http_router),
    ("sandbox", sandbox),
    ("dht_record", dht_record),
];
