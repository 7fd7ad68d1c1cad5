//! The executor: spawns processes on their own threads, records them in the
//! [`ProcessTable`], and answers `wait`, `kill`, `read` and `list`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::output::{Chunk, ProcessOutput};
use super::table::{ProcessEnd, ProcessError, ProcessId, ProcessInfo, ProcessTable, TableLimits};
use crate::exec::{ErrorKind, ExecError, Limits, ModuleHash, ModuleRef, OutputStream, RunReport};
use crate::exec::{RunSpec, Sandbox};

/// Limits of one process as asked for; the host clamps fuel and memory to its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Fuel budget; 0 means the host's maximum.
    pub fuel_max: u64,
    /// Largest linear memory in 64 KiB pages; 0 means the host's maximum.
    pub memory_pages_max: u32,
    /// Wall-clock deadline; `None` means the process may run until its fuel ends.
    pub deadline: Option<Duration>,
}

/// What to run as a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The module: bytes (compiled and cached) or the hash of a cached one.
    pub module: ModuleRef,
    /// The export to call (a module's `_start` runs first, as in any run).
    pub export: String,
    /// Its integer arguments.
    pub args: Vec<i64>,
    /// Its limits.
    pub limits: ProcessLimits,
}

/// The executor's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Processes running and ended processes kept.
    pub table: TableLimits,
    /// Bytes kept per output stream of one process; the oldest are dropped.
    pub output_bytes_max: usize,
    /// The most fuel and memory a process may have (its wall time is not capped).
    pub limits_max: Limits,
}

impl Default for ExecutorConfig {
    /// [`TableLimits::default`], 64 KiB per stream, [`Limits::default`] fuel and memory.
    fn default() -> Self {
        ExecutorConfig {
            table: TableLimits::default(),
            output_bytes_max: 64 * 1024,
            limits_max: Limits::default(),
        }
    }
}

/// Why an executor call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// The table refused (full, unknown process, already ended).
    #[error(transparent)]
    Table(#[from] ProcessError),
    /// The module could not be loaded.
    #[error(transparent)]
    Module(#[from] ExecError),
}

/// The executor's hold on one running or ended process.
#[derive(Debug)]
pub struct ProcessHandle {
    cancel: Arc<AtomicBool>,
    output: Arc<ProcessOutput>,
    ended: watch::Receiver<Option<ProcessEnd>>,
}

struct Inner {
    sandbox: Arc<Sandbox>,
    config: ExecutorConfig,
    table: RefCell<ProcessTable<ProcessHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Guests run on their own threads: without this they would run on,
        // unowned, until their fuel ran out.
        for handle in self.table.borrow().running_handles() {
            handle.cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs WASM modules as long-running processes on one host. Cheap to clone (all
/// clones share one table); lives on the RPC thread, inside a `LocalSet`. Each
/// running process has an OS thread of its own. Dropping the last clone kills
/// every running process.
#[derive(Clone)]
pub struct Executor {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.inner.config)
            .field("running", &self.inner.table.borrow().running())
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor running processes in `sandbox` (shared with the worker: one module cache).
    pub fn new(sandbox: Arc<Sandbox>, config: ExecutorConfig) -> Self {
        Executor {
            inner: Rc::new(Inner {
                sandbox,
                config,
                table: RefCell::new(ProcessTable::new(config.table)),
            }),
        }
    }

    /// Every process held (running, and the most recently ended): id, module
    /// hash, state and start time. What `ps` prints, and what the host's
    /// anchors can list.
    pub fn list(&self) -> Vec<ProcessInfo> {
        self.inner.table.borrow().list()
    }

    fn check_room(&self) -> Result<(), ProcessError> {
        let max = self.inner.config.table.running_max;
        if self.inner.table.borrow().running() >= max {
            return Err(ProcessError::Full(max));
        }
        Ok(())
    }

    /// Compiles (off this thread) or finds the module; returns its hash.
    async fn load(&self, module: ModuleRef) -> Result<ModuleHash, ExecutorError> {
        match module {
            ModuleRef::Hash(hash) if self.inner.sandbox.has_module(&hash) => Ok(hash),
            ModuleRef::Hash(hash) => Err(ExecError::new(
                ErrorKind::UnknownModule,
                format!("module {hash} is not cached on this host"),
            )
            .into()),
            ModuleRef::Bytes(bytes) => {
                let sandbox = self.inner.sandbox.clone();
                tokio::task::spawn_blocking(move || sandbox.insert_module(&bytes))
                    .await
                    .map_err(|e| ExecError::new(ErrorKind::Internal, e.to_string()))?
                    .map_err(ExecutorError::from)
            }
        }
    }

    fn clamp(&self, asked: ProcessLimits) -> Limits {
        let max = self.inner.config.limits_max;
        let pick = |asked: u64, most: u64| if asked == 0 { most } else { asked.min(most) };
        Limits {
            fuel_max: pick(asked.fuel_max, max.fuel_max),
            memory_pages_max: pick(
                u64::from(asked.memory_pages_max),
                u64::from(max.memory_pages_max),
            ) as u32,
            // No deadline: the meter's saturating sum never comes due.
            wall_time_ms: asked.deadline.map_or(u64::MAX, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }

    /// Starts a process; returns its id once its guest has been handed a thread.
    /// Refused when the host is full or the module does not load.
    pub async fn spawn(&self, spec: ProcessSpec) -> Result<ProcessId, ExecutorError> {
        // Checked before compiling, so a full host does no work; again when
        // admitting, since other spawns may have filled it meanwhile.
        self.check_room()?;
        let module = self.load(spec.module).await?;
        let run = RunSpec {
            module: ModuleRef::Hash(module),
            export: spec.export,
            args: spec.args,
            limits: self.clamp(spec.limits),
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let output = Arc::new(ProcessOutput::new(self.inner.config.output_bytes_max));
        let (ended_tx, ended_rx) = watch::channel(None);
        let host = self.inner.sandbox.config().host.clone();
        let started_ms = host.wall_clock_ns() / 1_000_000;
        let handle = ProcessHandle {
            cancel: cancel.clone(),
            output: output.clone(),
            ended: ended_rx,
        };
        let id = self
            .inner
            .table
            .borrow_mut()
            .admit(module, started_ms, handle)?;
        let (report_tx, report_rx) = tokio::sync::oneshot::channel();
        let sandbox = self.inner.sandbox.clone();
        let sink = output.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ww-process-{id}"))
            .spawn(move || {
                let report = sandbox.run_streaming(&run, cancel, sink);
                // The executor may be gone (host shutting down): nobody to tell.
                let _ = report_tx.send(report);
            });
        if let Err(e) = thread {
            // The entry is already in the table: end it as failed, so it does
            // not count as running for ever.
            tracing::error!(error = %e, "cannot start a thread for a process");
            self.end(
                id,
                RunReport::failed(ExecError::new(ErrorKind::Internal, e.to_string())),
                &output,
                &ended_tx,
            );
            return Ok(id);
        }
        tracing::info!(process = %id, module = %module, "process spawned");
        let executor = Rc::downgrade(&self.inner);
        tokio::task::spawn_local(async move {
            let report = report_rx.await.unwrap_or_else(|_| {
                RunReport::failed(ExecError::new(
                    ErrorKind::Internal,
                    "process thread vanished",
                ))
            });
            if let Some(inner) = executor.upgrade() {
                Executor { inner }.end(id, report, &output, &ended_tx);
            }
        });
        Ok(id)
    }

    fn end(
        &self,
        id: ProcessId,
        report: RunReport,
        output: &ProcessOutput,
        ended: &watch::Sender<Option<ProcessEnd>>,
    ) {
        output.close();
        let end = self.inner.table.borrow_mut().finish(id, report);
        tracing::info!(process = %id, state = end.state.name(), code = end.exit_code(), "process ended");
        ended.send_replace(Some(end));
    }

    /// Waits until process `id` ends; refuses an unknown one.
    pub async fn wait(&self, id: ProcessId) -> Result<ProcessEnd, ExecutorError> {
        let mut ended = {
            let table = self.inner.table.borrow();
            let entry = table.get(id)?;
            if let Some(end) = &entry.end {
                return Ok(end.clone());
            }
            entry.handle.ended.clone()
        };
        let stopped = || ExecError::new(ErrorKind::Internal, "the executor stopped");
        let end = ended
            .wait_for(Option::is_some)
            .await
            .map_err(|_| stopped())?
            .clone();
        Ok(end.ok_or_else(stopped)?)
    }

    /// Stops process `id` (within one fuel slice, or its current host call) and
    /// waits until it has stopped; refuses an unknown or ended one.
    pub async fn kill(&self, id: ProcessId) -> Result<ProcessEnd, ExecutorError> {
        self.inner
            .table
            .borrow_mut()
            .request_kill(id)?
            .cancel
            .store(true, Ordering::Relaxed);
        tracing::info!(process = %id, "process kill requested");
        self.wait(id).await
    }

    /// Up to `max_bytes` of process `id`'s `stream` from `offset` on.
    pub fn read(
        &self,
        id: ProcessId,
        stream: OutputStream,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Chunk, ExecutorError> {
        let table = self.inner.table.borrow();
        Ok(table.get(id)?.handle.output.read(stream, offset, max_bytes))
    }
}
