//! Worker calls: each [`Effect::StartRuns`](super::super::Effect::StartRuns)
//! becomes one `run` or `runMany` call on a local task, and each attempt's
//! end comes back through a queue whose length is bounded by the runs in
//! flight. A call is dropped (cancelling it on the worker) when the last of
//! its runs is stopped.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::gateway::core::{RunKey, RunStart};
use crate::gateway::runner::{run_many_on_worker, run_on_worker, RemoteWorkerHandle, ReportCheck};
use crate::sched::{RunOutcome, TaskId, WorkerId};

/// The call carrying one or more runs; shared by the runs of a `runMany`.
/// Dropped with its last run (or with the driver), it is aborted: dropping
/// the call cancels it on the worker, which stops the run.
struct RunCall(tokio::task::JoinHandle<()>);

impl Drop for RunCall {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The calls in flight, and the queue their ends come back on.
pub(super) struct Calls {
    running: BTreeMap<RunKey, Rc<RunCall>>,
    /// What every report must pass to be recorded.
    check: Arc<dyn ReportCheck>,
    sender: mpsc::UnboundedSender<(RunKey, RunOutcome)>,
    /// Each attempt's end (at most one per attempt in flight).
    pub(super) ends: mpsc::UnboundedReceiver<(RunKey, RunOutcome)>,
}

impl Calls {
    /// No calls; every report they bring back must pass `check`.
    pub(super) fn new(check: Arc<dyn ReportCheck>) -> Self {
        let (sender, ends) = mpsc::unbounded_channel();
        Calls {
            running: BTreeMap::new(),
            check,
            sender,
            ends,
        }
    }

    /// Calls `worker` with `runs`: `run` for one, `runMany` for more.
    pub(super) fn start(
        &mut self,
        client: RemoteWorkerHandle,
        worker: WorkerId,
        runs: Vec<RunStart>,
    ) {
        let keys: Vec<RunKey> = runs.iter().map(|r| r.run.clone()).collect();
        let done = self.sender.clone();
        let check = self.check.clone();
        let handle = tokio::task::spawn_local(async move {
            if let [start] = &runs[..] {
                let outcome =
                    run_on_worker(&client, &*check, &start.spec, start.module.clone()).await;
                report_end(&done, &worker, start.run.clone(), outcome);
                return;
            }
            let (keys, specs): (Vec<_>, Vec<_>) = runs
                .into_iter()
                .map(|start| (start.run, (start.spec, start.module)))
                .unzip();
            let outcomes = run_many_on_worker(&client, &*check, &specs).await;
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                report_end(&done, &worker, key, outcome);
            }
        });
        let call = Rc::new(RunCall(handle));
        for key in keys {
            self.running.insert(key, call.clone());
        }
    }

    /// The attempt came back: its call no longer carries it.
    pub(super) fn ended(&mut self, run: &RunKey) {
        self.running.remove(run);
    }

    /// Stops the attempt: a call carrying other runs goes on for them and is
    /// dropped with the last one stopped.
    pub(super) fn stop(&mut self, run: &RunKey) {
        if let Some(call) = self.running.remove(run) {
            if Rc::strong_count(&call) == 1 {
                call.0.abort();
            }
        }
    }

    /// Stops every call.
    pub(super) fn stop_all(&mut self) {
        for (_, call) in std::mem::take(&mut self.running) {
            call.0.abort();
        }
    }
}

/// Logs an attempt's end and hands it to the driver.
fn report_end(
    done: &mpsc::UnboundedSender<(RunKey, RunOutcome)>,
    worker: &WorkerId,
    run: RunKey,
    outcome: RunOutcome,
) {
    log_attempt_end(&run.0, run.1, run.2, worker, &outcome);
    // The driver outlives its calls; if it is gone, nobody needs the result.
    let _ = done.send((run, outcome));
}

/// One event per attempt that came back, with the task, run index, attempt and
/// worker as fields: successes at debug (a task may have thousands), failures
/// at info.
fn log_attempt_end(
    task: &TaskId,
    index: u32,
    attempt: u32,
    worker: &WorkerId,
    outcome: &RunOutcome,
) {
    match outcome {
        RunOutcome::Succeeded { fuel_used, .. } => {
            tracing::debug!(%task, index, attempt, %worker, fuel_used, "run succeeded");
        }
        RunOutcome::TaskFailed {
            kind,
            message,
            fuel_used,
            ..
        } => {
            tracing::info!(%task, index, attempt, %worker, kind = %kind, error = %message, fuel_used, "run failed");
        }
        RunOutcome::TransportFailed { message } => {
            tracing::info!(%task, index, attempt, %worker, error = %message, "run attempt lost; it may be retried");
        }
    }
}
