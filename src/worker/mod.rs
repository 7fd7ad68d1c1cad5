//! The `Worker` capability: runs WASM in the [`exec`](ww::exec) sandbox when a
//! peer asks, over Cap'n Proto RPC; [`node`] composes a worker node (transport,
//! sandbox, the capability served) and registers it with gateways.

mod client;
pub mod metrics;
mod modules;
pub mod node;
mod server;
pub mod wire;

pub use client::RemoteWorker;
pub use modules::{ModuleSource, ModuleSourceSlot, FETCHES_PER_CALL_MAX, FETCH_TIMEOUT};
pub use server::{ExecMode, LastPing, WorkerConfig, WorkerGauges, WorkerServer, CALLS_WAITING_MAX};

use ww::transport::Protocol;

/// The stream protocol a worker serves its capability on.
pub const WORKER_PROTOCOL: &str = "/ww-sched/0.1/worker";

/// [`WORKER_PROTOCOL`] as a checked [`Protocol`].
pub fn worker_protocol() -> Protocol {
    // A constant that satisfies Protocol's rules; checked by a unit test.
    Protocol::new(WORKER_PROTOCOL).expect("WORKER_PROTOCOL is a valid protocol name")
}

#[cfg(test)]
mod tests {
    #[test]
    fn worker_protocol_is_valid() {
        assert_eq!(super::worker_protocol().as_str(), super::WORKER_PROTOCOL);
    }
}
