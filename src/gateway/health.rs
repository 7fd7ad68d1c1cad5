//! The gateway's fail-stop switch, shared by the core, the HTTP handlers and
//! whoever runs the gateway. Once tripped it stays tripped: handlers answer
//! 503 instead of reading state that may not be what the disk holds, and the
//! process is expected to exit (non-zero) so a supervisor restarts it on the
//! same directory, where every acknowledged task is found.

use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use super::ApiError;

/// Why the gateway stopped, once it has.
#[derive(Debug, Default)]
pub struct Health {
    fatal: OnceLock<String>,
    tripped: Notify,
}

impl Health {
    /// A healthy gateway.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Records why the gateway can no longer keep its guarantees; the first
    /// cause wins.
    pub fn trip(&self, cause: impl Into<String>) {
        let cause = cause.into();
        if self.fatal.set(cause.clone()).is_ok() {
            tracing::error!(%cause, "gateway fail-stop: no more acknowledgements");
        }
        self.tripped.notify_waiters();
    }

    /// Why the gateway stopped, if it has.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// `Err(503 storage)` once tripped.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.fatal() {
            None => Ok(()),
            Some(cause) => Err(ApiError::Storage(cause.to_string())),
        }
    }

    /// Waits until the gateway is tripped and returns why.
    pub async fn tripped(&self) -> String {
        loop {
            let notified = self.tripped.notified();
            if let Some(cause) = self.fatal() {
                return cause.to_string();
            }
            notified.await;
        }
    }
}
