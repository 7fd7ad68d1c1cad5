//! ww-sched: a distributed job scheduler for WebAssembly tasks, an application
//! of the [`ww`] cluster stack.
//!
//! Modules: [`worker`] (the `Worker` capability over `ww::exec`'s sandbox, and
//! in [`worker::node`] a worker node and its registration with gateways),
//! [`sched`] (tasks, runs, the sans-IO scheduler and its stores), [`gateway`]
//! (the REST API and the core that drives the scheduler), [`lease`] (leases of
//! several gateways on one shared store), [`history`] (a client's history of
//! task operations and its checker), [`tasks`] (the hash-puzzle example module).
//! [`schema`] holds the Rust generated from `schema/worker.capnp`.

#![forbid(unsafe_code)]

pub mod gateway;
pub mod history;
pub mod lease;
pub mod sched;
pub mod schema;
pub mod tasks;
pub mod worker;
