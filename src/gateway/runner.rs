//! One run attempt on a remote worker, turned into the scheduler's outcome.

use std::rc::Rc;
use std::sync::Arc;

use crate::sched::{RunOutcome, TaskSpec, RESULTS_MAX};
use crate::worker::RemoteWorker;
use ww::exec::{ErrorKind, Limits, ModuleRef, RunReport, RunSpec};
use ww::rpc::RpcError;

/// Stdout kept per run.
pub const RUN_STDOUT_MAX: usize = 64 * 1024;

/// The spec of a run of `spec`'s task, the module named by its hash.
fn run_spec(spec: &TaskSpec) -> RunSpec {
    RunSpec {
        module: ModuleRef::Hash(ww::exec::ModuleHash(spec.module_hash)),
        export: spec.export.clone(),
        args: spec.args.clone(),
        limits: Limits {
            fuel_max: spec.fuel_max,
            memory_pages_max: spec.memory_pages_max,
            wall_time_ms: spec.duration_ms,
        },
    }
}

fn unknown_module(report: &Result<RunReport, RpcError>) -> bool {
    matches!(report, Ok(r) if matches!(&r.outcome, Err(e) if e.kind() == ErrorKind::UnknownModule))
}

/// Runs one attempt: by hash first, sending the module's bytes only if the
/// worker does not have it yet.
pub(super) async fn run_on_worker(
    worker: &RemoteWorkerHandle,
    check: &dyn ReportCheck,
    spec: &TaskSpec,
    module: Arc<Vec<u8>>,
) -> RunOutcome {
    let run = run_spec(spec);
    let report = worker.run(&run).await;
    finish(worker, check, spec, &run, &module, report).await
}

/// Runs attempts, each of its task's spec with the task's module, in one
/// `runMany` call; their outcomes in order. A worker that predates `runMany`
/// gets one `run` call per attempt, side by side.
pub(super) async fn run_many_on_worker(
    worker: &RemoteWorkerHandle,
    check: &dyn ReportCheck,
    runs: &[(TaskSpec, Arc<Vec<u8>>)],
) -> Vec<RunOutcome> {
    let specs: Vec<RunSpec> = runs.iter().map(|(spec, _)| run_spec(spec)).collect();
    match worker.run_many(&specs).await {
        Err(e) => {
            let message = e.to_string();
            runs.iter()
                .map(|_| RunOutcome::TransportFailed {
                    message: message.clone(),
                })
                .collect()
        }
        Ok(None) => {
            futures::future::join_all(
                runs.iter()
                    .map(|(spec, module)| run_on_worker(worker, check, spec, module.clone())),
            )
            .await
        }
        Ok(Some(reports)) => {
            futures::future::join_all(runs.iter().zip(&specs).zip(reports).map(
                |(((spec, module), run), report)| {
                    finish(worker, check, spec, run, module, Ok(report))
                },
            ))
            .await
        }
    }
}

/// Turns a worker's answer into the attempt's outcome; an answer of
/// `unknown_module` is asked again with the module's bytes.
async fn finish(
    worker: &RemoteWorkerHandle,
    check: &dyn ReportCheck,
    spec: &TaskSpec,
    run: &RunSpec,
    module: &Arc<Vec<u8>>,
    mut report: Result<RunReport, RpcError>,
) -> RunOutcome {
    let mut run = std::borrow::Cow::Borrowed(run);
    if unknown_module(&report) {
        run.to_mut().module = ModuleRef::Bytes(Vec::clone(module));
        report = worker.run(&run).await;
    }
    let report = report.map(|r| {
        let why = check.refusal(&r, &run.limits);
        (r, why)
    });
    match report {
        Err(e) => RunOutcome::TransportFailed {
            message: e.to_string(),
        },
        Ok((_, Some(why))) => {
            tracing::warn!(task = %spec.id, worker = ?worker.peer(), %why, "a worker's report cannot be true; the run is retried");
            // Retried like a lost attempt: the report is not recorded.
            RunOutcome::TransportFailed {
                message: format!("implausible report: {why}"),
            }
        }
        Ok((report, None)) => {
            let stdout = truncate_text(
                String::from_utf8_lossy(&report.stdout).into_owned(),
                RUN_STDOUT_MAX,
            );
            match report.outcome {
                Ok(results) => RunOutcome::Succeeded {
                    results,
                    stdout,
                    fuel_used: report.fuel_used,
                },
                Err(e) => RunOutcome::TaskFailed {
                    kind: e.kind(),
                    message: e.message().to_string(),
                    stdout,
                    fuel_used: report.fuel_used,
                },
            }
        }
    }
}

/// What the gateway checks of every worker's report before it records the
/// run: a report refused is not recorded, and the run is retried like a lost
/// attempt (another worker may do better). [`PlausibleReports`] is the
/// default; an application can put its own in the gateway's configuration,
/// for example one that also verifies results it can check cheaply.
pub trait ReportCheck: std::fmt::Debug + Send + Sync {
    /// Why `report`, a worker's answer to a run under `limits`, is not to be
    /// recorded; `None` to record it.
    fn refusal(&self, report: &RunReport, limits: &Limits) -> Option<String>;
}

/// Refuses what no honest worker can report of a run: more fuel than its
/// limit, more results than [`RESULTS_MAX`]. Key holders are trusted to run
/// tasks faithfully (docs/SECURITY.md), so this catches broken or careless
/// workers, not clever forgeries.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlausibleReports;

impl ReportCheck for PlausibleReports {
    fn refusal(&self, report: &RunReport, limits: &Limits) -> Option<String> {
        implausible(report, limits)
    }
}

/// Why `report` cannot be an honest worker's report of a run under `limits`, if
/// it cannot.
fn implausible(report: &RunReport, limits: &Limits) -> Option<String> {
    // Zero asks for the worker's default, which the gateway does not know.
    if limits.fuel_max > 0 && report.fuel_used > limits.fuel_max {
        return Some(format!(
            "burnt {} fuel of at most {}",
            report.fuel_used, limits.fuel_max
        ));
    }
    if let Ok(results) = &report.outcome {
        if results.len() > RESULTS_MAX {
            return Some(format!(
                "{} results, more than {RESULTS_MAX}",
                results.len()
            ));
        }
    }
    None
}

/// Cuts `text` to at most `bytes_max` bytes on a character boundary.
fn truncate_text(mut text: String, bytes_max: usize) -> String {
    if text.len() > bytes_max {
        let mut cut = bytes_max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// A worker capability as the pool holds it.
pub type RemoteWorkerHandle = Rc<RemoteWorker>;
