//! One run attempt on a remote worker, turned into the scheduler's outcome.

use std::rc::Rc;
use std::sync::Arc;

use crate::exec::{ErrorKind, Limits, ModuleRef, RunReport, RunSpec};
use crate::sched::{RunOutcome, TaskSpec, RESULTS_MAX};
use crate::worker::RemoteWorker;

/// Stdout kept per run.
pub const RUN_STDOUT_MAX: usize = 64 * 1024;

/// Runs one attempt: by hash first, sending the module's bytes only if the
/// worker does not have it yet.
pub(super) async fn run_on_worker(
    worker: &RemoteWorkerHandle,
    spec: &TaskSpec,
    module: Arc<Vec<u8>>,
) -> RunOutcome {
    let mut run = RunSpec {
        module: ModuleRef::Hash(crate::exec::ModuleHash(spec.module_hash)),
        export: spec.export.clone(),
        args: spec.args.clone(),
        limits: Limits {
            fuel_max: spec.fuel_max,
            memory_pages_max: spec.memory_pages_max,
            wall_time_ms: spec.duration_ms,
        },
    };
    let mut report = worker.run(&run).await;
    if matches!(&report, Ok(r) if matches!(&r.outcome, Err(e) if e.kind() == ErrorKind::UnknownModule))
    {
        run.module = ModuleRef::Bytes(Vec::clone(&module));
        report = worker.run(&run).await;
    }
    let report = report.map(|r| {
        let why = implausible(&r, &run.limits);
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
                    kind: e.kind().as_str().to_string(),
                    message: e.message().to_string(),
                    stdout,
                    fuel_used: report.fuel_used,
                },
            }
        }
    }
}

/// Why `report` cannot be an honest worker's report of a run under `limits`, if
/// it cannot: key holders are trusted to run tasks faithfully (docs/SECURITY.md),
/// so this catches broken or careless workers, not clever forgeries.
pub(crate) fn implausible(report: &RunReport, limits: &Limits) -> Option<String> {
    #[cfg(feature = "sabotage")]
    if crate::sabotage::armed(crate::sabotage::Sabotage::AcceptImpossibleReports) {
        return None;
    }
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
