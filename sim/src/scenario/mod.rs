//! Scenario files: the cluster's shape, workloads, a fault schedule over
//! simulated time and the invariants to check, read from TOML (see
//! `scenarios/README.md`); the runner that simulates one under a seed and returns
//! a [`Verdict`]; and the swarm variation of a scenario per seed.

use std::fmt;

pub(crate) mod faults;
pub(crate) mod format;
mod leases_run;
mod run;
pub mod swarm;
mod validate;
pub(crate) mod verdict;

pub use faults::{Cause, Disturbances, Window};
pub use format::*;
pub use run::{run, run_with, RunOptions, TICK, UDP_CAPACITY};
pub use verdict::{Check, Class, Verdict};

/// A scenario that could not be read, or a run that could not be carried out.
#[derive(Debug)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}
