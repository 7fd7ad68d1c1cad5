//! Processes (issue 15, part 4): the `Executor` capability of a worker host runs
//! WASM modules as long-running processes, each with its own fuel and memory
//! limits and no deadline unless asked, with `wait`, `kill`, output read as
//! streams, and a plain [`Executor::list`] for the host's anchors to use.

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
