//! The ww-sched simulation harness: seeds, the ordered event trace whose digest
//! proves a run deterministic, a membership cluster harness, and scenario files
//! (`scenarios/*.toml`) with their runner and the `ww-sim` command.
//!
//! Simulations run every node as a turmoil host on one thread, over
//! [`ww::transport::SimTransport`]. Same seed, same trace.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod disk;
pub mod http;
pub mod sabotage;
pub mod scenario;
mod seed;
mod trace;
pub mod workload;

pub use sabotage::Sabotage;
pub use seed::{cluster_key, derive_seed, host_config, parse_seed, root_seed, SEED_ENV};
pub use trace::Trace;
