//! The core's side of the commit pipeline: forming and sending batches,
//! taking their results, releasing or refusing held answers, retention, and
//! the fail-stop.

use std::collections::{BTreeMap, BTreeSet};

use super::{internal, Core, Held, Released, EXPIRE_DELETE_MAX, MODULES_COLLECT_MAX};
use crate::gateway::events::Event;
use crate::gateway::ApiError;
use crate::sched::{
    Effect, Op, PurgeOutcome, StoreError, TakenCause, TakenTask, TaskHeader, TaskId,
};

impl Core {
    /// Queues retention: finished tasks past their time or beyond the most
    /// kept, and modules unused past their grace.
    pub(super) fn expire(&mut self, now_ms: u64) {
        let retention = self.config.retention;
        self.plan.queue(Op::Expire {
            now_ms,
            retain_ms: retention.retain_ms,
            finished_max: retention.finished_max,
            delete_max: EXPIRE_DELETE_MAX,
        });
        let unused = self
            .modules
            .collect(now_ms, retention.module_grace_ms, MODULES_COLLECT_MAX);
        if !unused.is_empty() {
            tracing::info!(modules = unused.len(), "deleting modules no task refers to");
            self.plan.queue(Op::DeleteModules { hashes: unused });
        }
        self.next_expire_ms = now_ms.saturating_add(retention.interval_ms.max(1));
    }

    /// Forms the next batch and sends it, if none is in flight.
    pub(super) fn send_batch(&mut self) {
        let sched = &self.sched;
        let Some(formed) = self.plan.form(|id| sched.task(id)) else {
            return;
        };
        self.modules.formed();
        #[allow(unused_mut)]
        let mut durable = true;
        #[cfg(feature = "sabotage")]
        if !formed.answers_waiting
            && crate::sabotage::armed(crate::sabotage::Sabotage::ShowUnsyncedResults)
        {
            // Progress nobody waits for is committed without an fsync, yet
            // readers see it: a crash then takes back a result already shown.
            durable = false;
        }
        self.in_flight_since = Some(tokio::time::Instant::now());
        self.committer.send(formed.seq, formed.batch, durable);
    }

    pub(super) fn commit_done(
        &mut self,
        seq: u64,
        result: Result<crate::sched::BatchReport, StoreError>,
    ) {
        self.in_flight_since = None;
        match result {
            Ok(report) => {
                self.commits += 1;
                let released = self.plan.committed(seq, report);
                self.released(released);
            }
            Err(e) => {
                let cause = match e.os_error() {
                    Some(code) => format!("{e} (os error {code})"),
                    None => e.to_string(),
                };
                self.fail(cause);
            }
        }
    }

    /// The store failed: refuse everything held (the batch in flight too),
    /// trip the health switch.
    pub(super) fn fail(&mut self, cause: String) {
        if self.plan.failure().is_some() {
            return;
        }
        let seq = self.plan.in_flight().unwrap_or(0);
        self.in_flight_since = None;
        for held in self.plan.failed(seq, cause.clone()) {
            held.refuse(&cause);
        }
        // Nothing they report can be recorded now, and on a shared store
        // another gateway may soon run them: stop them.
        self.starts.clear();
        for (_, call) in std::mem::take(&mut self.running) {
            call.0.abort();
        }
        self.health.trip(cause);
    }

    pub(super) fn released(&mut self, mut released: Released<Held>) {
        let now = (self.clock)();
        let taken = std::mem::take(&mut released.report.taken);
        if !taken.is_empty() {
            let gone: BTreeSet<TaskId> = taken.iter().map(|t| t.id.clone()).collect();
            for t in &taken {
                self.withdraw(now, &t.id);
                if let TakenCause::ModuleGone(hash) = &t.cause {
                    self.modules.forget(hash);
                }
            }
            released.finished.retain(|id| !gone.contains(id));
            released.written.retain(|id, _| !gone.contains(id));
            released.runs.retain(|r| !gone.contains(&r.task));
        }
        let report = released.report;
        for deleted in &report.deleted {
            self.modules.released(&deleted.module_hash, now);
        }
        if !report.deleted.is_empty() {
            tracing::debug!(tasks = report.deleted.len(), "finished tasks deleted");
        }
        if self.store.shared().is_some() {
            for hash in &report.modules_kept {
                self.modules.kept_elsewhere(*hash, now);
            }
        } else if !report.modules_kept.is_empty() {
            let refs = match self.store.module_refs() {
                Ok(refs) => refs,
                Err(e) => return self.fail(format!("store read failed: {e}")),
            };
            for hash in &report.modules_kept {
                if let Some(refs) = refs.get(hash) {
                    self.modules.kept(*hash, *refs);
                }
            }
        }
        if report.expire_more {
            self.next_expire_ms = now;
        }
        for ended in &released.ended {
            self.metrics.run_ended(ended);
        }
        // Committed now: what the events announce is on disk.
        for run in &released.runs {
            self.events.publish(Event::Run {
                task: run.task.clone(),
                index: run.index,
                attempt: run.attempt,
                status: run.status,
            });
        }
        for (id, header) in &released.written {
            self.events.publish(Event::Task {
                id: id.clone(),
                status: header.status,
            });
        }
        for id in released.finished {
            match self.sched.forget(&id) {
                Ok(task) => {
                    self.metrics.task_finished(task.status);
                    tracing::info!(task = %id, status = ?task.status, completions = task.completions, "task finished");
                    if let Some(key) = &task.spec.idempotency_key {
                        self.keys.remove(key);
                    }
                }
                Err(e) => debug_assert!(false, "a task stored final could not be forgotten: {e}"),
            }
        }
        self.modules.committed();
        for held in released.answers {
            self.answer(held, &report.purged, &released.written, &taken);
        }
    }

    /// Drops a new task another gateway stored first under its id or key
    /// (a shared store): its runs stop and nothing more of it is written.
    fn withdraw(&mut self, now: u64, id: &TaskId) {
        let Some(task) = self.sched.task(id) else {
            return;
        };
        let (key, hash) = (task.spec.idempotency_key.clone(), task.spec.module_hash);
        match self.sched.cancel(now, id) {
            Ok(effects) => {
                // Its own changes are not written (it is not this gateway's);
                // other tasks' runs that its slots now let start are.
                let effects = effects
                    .into_iter()
                    .filter(|e| !matches!(e, Effect::TaskChanged { task, .. } if task == id))
                    .collect();
                self.apply(effects);
            }
            Err(e) => debug_assert!(false, "a held task could not be cancelled: {e}"),
        }
        if let Err(e) = self.sched.forget(id) {
            debug_assert!(false, "a cancelled task could not be forgotten: {e}");
        }
        self.plan.withdraw(id);
        if let Some(key) = key {
            if self.keys.get(&key) == Some(id) {
                self.keys.remove(&key);
            }
        }
        self.modules.released(&hash, now);
        tracing::info!(task = %id, "another gateway's commit took this task's id, key or module first; this copy is dropped");
    }

    /// Sends a held answer, showing committed state only: the header the
    /// batch wrote, or else the store's.
    pub(super) fn answer(
        &mut self,
        held: Held,
        purged: &[(TaskId, PurgeOutcome)],
        written: &BTreeMap<TaskId, TaskHeader>,
        taken: &[TakenTask],
    ) {
        let committed = |core: &mut Core, id: &TaskId| match written.get(id) {
            Some(header) => Ok(header.clone()),
            None => core.committed_header(id),
        };
        match held {
            Held::Submit { reply, id, .. } if taken.iter().any(|t| t.id == id) => {
                let cause = taken
                    .iter()
                    .find(|t| t.id == id)
                    .map_or(TakenCause::Id, |t| t.cause.clone());
                let answer = match cause {
                    // The same request, through another gateway first: its
                    // task (gone meanwhile, or unreadable: say so, stop nothing).
                    TakenCause::Key(other) => match self.store.header(&other) {
                        Ok(Some(header)) => Ok((header, false)),
                        Ok(None) => Err(ApiError::Conflict(format!(
                            "idempotency key of task {:?} named task {:?}, since deleted",
                            id.as_str(), other.as_str()
                        ))),
                        Err(e) => Err(ApiError::Busy(format!("the task store: {e}"))),
                    },
                    TakenCause::Id => Err(ApiError::Conflict(format!(
                        "a task with id {:?} was created through another gateway at the same moment",
                        id.as_str()
                    ))),
                    TakenCause::ModuleGone(hash) => Err(ApiError::Unprocessable(format!(
                        "unknown module {}: it was deleted, unused, while this task was \
                         accepted; upload it again with POST /modules (task {:?} was not \
                         created)",
                        ww::exec::ModuleHash(hash),
                        id.as_str()
                    ))),
                };
                let _ = reply.send(answer);
            }
            Held::Submit { reply, id, created } => {
                let header = committed(self, &id);
                if created && header.is_ok() {
                    self.metrics.tasks_submitted.inc();
                }
                let _ = reply.send(header.map(|h| (h, created)));
            }
            Held::Cancel { reply, id } => {
                let _ = reply.send(committed(self, &id));
            }
            Held::Purge { reply, id } => {
                let outcome = purged.iter().find(|(p, _)| *p == id).map(|(_, o)| *o);
                let answer = match outcome {
                    Some(PurgeOutcome::Purged) => Ok(()),
                    Some(PurgeOutcome::NotFound) => {
                        Err(ApiError::NotFound(format!("no task {:?}", id.as_str())))
                    }
                    Some(PurgeOutcome::NotFinished) => Err(ApiError::Conflict(format!(
                        "task {:?} is not finished; cancel it and purge it once final",
                        id.as_str()
                    ))),
                    None => Err(internal(format!("purge of {id} not carried out"))),
                };
                let _ = reply.send(answer);
            }
            Held::Module { reply, hash } => {
                let _ = reply.send(Ok(hash));
            }
        }
    }

    /// The task's header as the store holds it; missing or unreadable trips
    /// fail-stop, since an acknowledgement is about to show it.
    pub(super) fn committed_header(&mut self, id: &TaskId) -> Result<TaskHeader, ApiError> {
        match self.store.header(id) {
            Ok(Some(header)) => Ok(header),
            Ok(None) => {
                #[cfg(feature = "sabotage")]
                if self.plan.unwritten.contains(id) {
                    if let Some(task) = self.sched.task(id) {
                        return Ok(task.header());
                    }
                }
                let cause = format!("task {id} was committed but is not in the store");
                self.fail(cause.clone());
                Err(ApiError::Storage(cause))
            }
            Err(e) => {
                self.fail(e.to_string());
                Err(ApiError::Storage(e.to_string()))
            }
        }
    }
}
