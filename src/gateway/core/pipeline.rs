//! The core's side of the commit pipeline: forming batches, taking their
//! results, releasing or refusing held answers, retention, and the
//! fail-stop.

use std::collections::{BTreeMap, BTreeSet};

use super::reads::Pending;
use super::{
    internal, Answer, Core, Effect, Held, Read, Released, RequestId, EXPIRE_DELETE_MAX,
    MODULES_COLLECT_MAX,
};
use crate::gateway::events::Event;
use crate::gateway::ApiError;
use crate::sched::{
    BatchReport, Effect as SchedEffect, ModuleRefs, Op, PurgeOutcome, StoreError, TakenCause,
    TakenTask, TaskHeader, TaskId,
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

    /// Forms the next batch and asks for its commit, if none is in flight.
    pub(super) fn send_batch(&mut self) {
        let sched = &self.sched;
        let Some(formed) = self.plan.form(|id| sched.task(id)) else {
            return;
        };
        self.modules.formed();
        self.in_flight_since_ms = Some(self.now_ms);
        self.out.push(Effect::Commit {
            seq: formed.seq,
            batch: formed.batch,
        });
    }

    /// Batch `seq` committed (its answers go) or failed (everything stops).
    pub(super) fn commit_done(&mut self, seq: u64, result: Result<BatchReport, StoreError>) {
        if self.plan.in_flight() != Some(seq) {
            // A result after a fail-stop (the batch was refused then).
            debug_assert!(
                self.plan.failure().is_some(),
                "result of batch {seq}, not in flight"
            );
            return;
        }
        self.in_flight_since_ms = None;
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

    /// The store failed (or cannot be trusted): refuse everything held and
    /// waiting, stop every run, trip the health switch. Once only.
    pub(super) fn fail(&mut self, cause: String) {
        if self.plan.failure().is_some() {
            return;
        }
        let seq = self.plan.in_flight().unwrap_or(0);
        self.in_flight_since_ms = None;
        for held in self.plan.failed(seq, cause.clone()) {
            self.out.push(held.refusal(&cause));
        }
        self.refuse_reading(&cause);
        // Nothing they report can be recorded now, and on a shared store
        // another gateway may soon run them: stop them.
        self.starts.clear();
        self.module_waits.clear();
        self.out.push(Effect::StopAllRuns);
        self.out.push(Effect::FailStop { cause });
    }

    pub(super) fn released(&mut self, mut released: Released<Held>) {
        let now = self.now_ms;
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
            self.deleted_meanwhile.insert(deleted.id.clone());
        }
        if !report.deleted.is_empty() {
            tracing::debug!(tasks = report.deleted.len(), "finished tasks deleted");
        }
        if self.config.shared() {
            for hash in &report.modules_kept {
                self.modules.kept_elsewhere(*hash, now);
            }
        } else if !report.modules_kept.is_empty() {
            // The mirror was wrong: learn the store's counts.
            self.read(
                Read::ModuleRefs,
                Pending::ModuleRefs(report.modules_kept.clone()),
            );
        }
        if report.expire_more {
            self.next_expire_ms = now;
        }
        for ended in &released.ended {
            self.metrics.run_ended(ended);
        }
        // Committed now: what the events announce is on disk.
        for run in &released.runs {
            self.out.push(Effect::Publish(Event::Run {
                task: run.task.clone(),
                index: run.index,
                attempt: run.attempt,
                status: run.status,
            }));
        }
        for (id, header) in &released.written {
            self.out.push(Effect::Publish(Event::Task {
                id: id.clone(),
                status: header.status,
            }));
        }
        for id in released.finished {
            match self.sched.forget(&id) {
                Ok(task) => {
                    self.metrics.task_finished(task.status);
                    tracing::info!(task = %id, status = ?task.status, completions = task.completions, "task finished");
                    if let Some(key) = &task.spec.idempotency_key {
                        self.keys.remove(key);
                    }
                    if self.owned_reads > 0 {
                        self.forgotten_meanwhile.insert(id);
                    }
                }
                Err(e) => debug_assert!(false, "a task stored final could not be forgotten: {e}"),
            }
        }
        self.modules.committed();
        for held in released.answers {
            match self.plan.failure() {
                // An answer before it found the store wanting: nothing more
                // is acknowledged.
                Some(cause) => {
                    let refusal = held.refusal(cause);
                    self.out.push(refusal);
                }
                None => self.release(held, &report.purged, &released.written, &taken),
            }
        }
        self.forget_deleted_unless_rendering();
    }

    /// The store's counts of modules it kept though the mirror thought them
    /// unused came back.
    pub(super) fn module_refs_read(
        &mut self,
        hashes: Vec<[u8; 32]>,
        result: Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError>,
    ) {
        match result {
            Ok(refs) => {
                for hash in &hashes {
                    if let Some(refs) = refs.get(hash) {
                        self.modules.kept(*hash, *refs);
                    }
                }
            }
            Err(e) if e.is_transient() => {
                // Asked again: the mirror does not know them meanwhile (a
                // submission naming one is refused as unknown, as while its
                // deletion was in flight).
                tracing::warn!(error = %e, "module counts not read; asking again");
                self.read(Read::ModuleRefs, Pending::ModuleRefs(hashes));
            }
            Err(e) => self.fail(format!("store read failed: {e}")),
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
                    .filter(|e| !matches!(e, SchedEffect::TaskChanged { task, .. } if task == id))
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

    /// Sends a released answer, showing committed state only: the header the
    /// batch wrote, or else the store's (read first).
    fn release(
        &mut self,
        held: Held,
        purged: &[(TaskId, PurgeOutcome)],
        written: &BTreeMap<TaskId, TaskHeader>,
        taken: &[TakenTask],
    ) {
        match held {
            Held::Submit { request, id, .. } if taken.iter().any(|t| t.id == id) => {
                let cause = taken
                    .iter()
                    .find(|t| t.id == id)
                    .map_or(TakenCause::Id, |t| t.cause.clone());
                let answer = match cause {
                    // The same request, through another gateway first: its
                    // task, as the store holds it.
                    TakenCause::Key(other) => {
                        let read = Read::Header(other.clone());
                        self.read(read, Pending::TakenKey { request, id, other });
                        return;
                    }
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
                self.answer(request, Answer::Submit(answer));
            }
            Held::Submit { .. } | Held::Cancel { .. } => {
                let id = match &held {
                    Held::Submit { id, .. } | Held::Cancel { id, .. } => id.clone(),
                    _ => unreachable!("matched above"),
                };
                match written.get(&id).cloned() {
                    Some(header) => self.render(held, Ok(Some(header))),
                    None => {
                        self.read(Read::Header(id), Pending::Render(held));
                    }
                }
            }
            Held::Purge { request, id } => {
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
                self.answer(request, Answer::Purge(answer));
            }
            Held::Module { request, hash } => self.answer(request, Answer::Module(Ok(hash))),
        }
    }

    /// Answers a released submission or cancel with the task as committed:
    /// missing from the store, or unreadable there, the store can no longer
    /// be trusted (fail-stop); out of reach, 503 (it was committed: a retry
    /// with the same key finds it).
    pub(super) fn render(&mut self, held: Held, header: Result<Option<TaskHeader>, StoreError>) {
        let id = match &held {
            Held::Submit { id, .. } | Held::Cancel { id, .. } => id.clone(),
            other => {
                debug_assert!(false, "{other:?} is not rendered from a header");
                return;
            }
        };
        let header = match header {
            Ok(Some(header)) => Ok(header),
            Ok(None) => {
                let retry = matches!(held, Held::Submit { created: false, .. });
                if retry {
                    // A retry acknowledges nothing new, and the task its key
                    // named may have been purged or expired since the key
                    // was looked up: gone by request, not lost.
                    Err(ApiError::Conflict(format!(
                        "the Idempotency-Key named task {:?}, since deleted; nothing changed \
                         (use a new key for a new task)",
                        id.as_str()
                    )))
                } else if self.deleted_meanwhile.contains(&id) {
                    // Purged or expired since it was acknowledged: gone by
                    // request, not lost.
                    Err(ApiError::NotFound(format!(
                        "task {:?} was deleted (purged, or past its retention) before this \
                         answer could show it",
                        id.as_str()
                    )))
                } else {
                    let cause = format!("task {id} was committed but is not in the store");
                    self.fail(cause.clone());
                    Err(ApiError::Storage(cause))
                }
            }
            Err(e) => Err(self.read_failed(e)),
        };
        match held {
            Held::Submit {
                request, created, ..
            } => {
                if created && header.is_ok() {
                    self.metrics.tasks_submitted.inc();
                }
                self.answer(request, Answer::Submit(header.map(|h| (h, created))));
            }
            Held::Cancel { request, .. } => self.answer(request, Answer::Cancel(header)),
            other => debug_assert!(false, "{other:?} is not rendered from a header"),
        }
    }

    /// Deletions are remembered only while an answer is being read to be
    /// shown.
    pub(super) fn forget_deleted_unless_rendering(&mut self) {
        if !self.reads.values().any(|p| matches!(p, Pending::Render(_))) {
            self.deleted_meanwhile.clear();
        }
    }

    /// A submission whose key another gateway stored first: its task, or
    /// why not (never a fail-stop: the store did what it should).
    pub(super) fn taken_key(
        &mut self,
        request: RequestId,
        id: TaskId,
        other: TaskId,
        header: Result<Option<TaskHeader>, StoreError>,
    ) {
        let answer = match header {
            Ok(Some(header)) => Ok((header, false)),
            Ok(None) => Err(ApiError::Conflict(format!(
                "idempotency key of task {:?} named task {:?}, since deleted",
                id.as_str(),
                other.as_str()
            ))),
            Err(e) => Err(ApiError::Busy(format!("the task store: {e}"))),
        };
        self.answer(request, Answer::Submit(answer));
    }
}
