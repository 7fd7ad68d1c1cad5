//! ww-sched: a distributed job scheduler for WebAssembly tasks on a Wetware-style
//! cluster stack.
//!
//! Layers, bottom up (each uses only those below it): [`transport`] (the one
//! networking seam, libp2p or turmoil), [`rpc`] (Cap'n Proto capabilities over any
//! transport), [`exec`] (the WASM sandbox), [`worker`] (the `Worker` capability).
//! [`schema`] holds the Rust generated from `schema/*.capnp`.

pub mod anchor;
pub mod boot;
pub mod cluster;
pub mod csp;
pub mod exec;
pub mod gateway;
pub mod history;
pub mod lease;
pub mod node;
pub mod process;
pub mod pubsub;
pub mod records;
pub mod rpc;
#[cfg(feature = "sabotage")]
pub mod sabotage;
pub mod sched;
pub mod schema;
pub mod tasks;
pub mod transport;
pub mod worker;
