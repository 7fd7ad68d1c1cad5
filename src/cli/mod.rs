//! The subcommands of `ww-sched`, one file each, and what they share.

pub mod call;
pub mod demo;
pub mod run_local;
pub mod worker;

use std::future::Future;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww_sched::exec::Limits;

/// Largest module file the CLI reads.
const MODULE_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Runs a node's async work on a current-thread runtime with a `LocalSet`.
pub fn on_node_thread(work: impl Future<Output = Result<()>>) -> Result<()> {
    ww_sched::rpc::block_on_local(work).context("cannot start the node's runtime")?
}

/// Reads a module file, refusing anything over the size limit before reading it.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read module {}", path.display()))?
        .len();
    if size > MODULE_FILE_BYTES_MAX {
        bail!(
            "module {} is {size} bytes; the limit is {MODULE_FILE_BYTES_MAX}",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))
}

/// Sandbox limits as flags.
#[derive(Args)]
pub struct LimitArgs {
    /// Most fuel (about one unit per WASM instruction) a run may burn.
    #[arg(long, default_value_t = Limits::default().fuel_max)]
    pub fuel_max: u64,
    /// Most 64 KiB memory pages a run may use.
    #[arg(long, default_value_t = Limits::default().memory_pages_max)]
    pub memory_pages_max: u32,
    /// Most wall-clock milliseconds a run may take.
    #[arg(long, default_value_t = Limits::default().wall_time_ms)]
    pub wall_time_ms: u64,
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            fuel_max: self.fuel_max,
            memory_pages_max: self.memory_pages_max,
            wall_time_ms: self.wall_time_ms,
        }
    }
}
