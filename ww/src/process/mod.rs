//! Processes (issue 15, part 4): the `Executor` capability of a worker host runs
//! WASM modules as long-running processes, each with its own fuel and memory
//! limits and no deadline unless asked, with `wait`, `kill`, output read as
//! streams, and a plain [`Executor::list`] for the host's anchors to use.
//!
//! # Example
//!
//! A module run as a process: spawned, waited for, its output read.
//!
//! ```
//! use std::sync::Arc;
//! use ww::exec::{ModuleRef, OutputStream, Sandbox, SandboxConfig};
//! use ww::process::{Executor, ExecutorConfig, ProcessLimits, ProcessSpec, ProcessState};
//!
//! // Writes "hi\n" to stdout, then returns.
//! let wasm = wat::parse_str(
//!     r#"(module
//!       (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
//!       (memory (export "memory") 1)
//!       (data (i32.const 16) "hi\n")
//!       (func (export "run")
//!         (i32.store (i32.const 0) (i32.const 16))
//!         (i32.store (i32.const 4) (i32.const 3))
//!         (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
//! )?;
//! ww::rpc::block_on_local(async {
//!     let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
//!     let executor = Executor::new(sandbox, ExecutorConfig::default());
//!     let id = executor
//!         .spawn(ProcessSpec {
//!             module: ModuleRef::Bytes(wasm),
//!             export: "run".into(),
//!             args: Vec::new(),
//!             limits: ProcessLimits::default(),
//!         })
//!         .await?;
//!     let end = executor.wait(id).await?;
//!     assert_eq!(end.state, ProcessState::Exited(0));
//!     let out = executor.read(id, OutputStream::Stdout, 0, 1024)?;
//!     assert_eq!(out.data, b"hi\n");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod executor;
mod output;
mod server;
mod table;
#[cfg(test)]
mod tests_executor;

pub use client::RemoteExecutor;
pub use executor::{
    Executor, ExecutorConfig, ExecutorError, ProcessHandle, ProcessLimits, ProcessSpec,
};
pub use output::{Chunk, ProcessOutput, READ_BYTES_MAX};
pub use server::{state_to_wire, ExecutorServer, WAITS_PER_CALLER_MAX};
pub use table::{
    Entry, ProcessEnd, ProcessError, ProcessId, ProcessInfo, ProcessState, ProcessTable,
    TableLimits, EXIT_CODE_FAILED, EXIT_CODE_KILLED,
};

use crate::transport::Protocol;

/// The stream protocol a worker host serves its executor on.
pub const EXECUTOR_PROTOCOL: &str = "/ww-sched/0.1/executor";

/// [`EXECUTOR_PROTOCOL`] as a checked [`Protocol`].
pub fn executor_protocol() -> Protocol {
    // A constant that satisfies Protocol's rules; checked by a unit test.
    Protocol::new(EXECUTOR_PROTOCOL).expect("EXECUTOR_PROTOCOL is a valid protocol name")
}

#[cfg(test)]
mod tests {
    #[test]
    fn executor_protocol_is_valid() {
        assert_eq!(
            super::executor_protocol().as_str(),
            super::EXECUTOR_PROTOCOL
        );
    }
}
