//! [`Sabotage::LoseAckedTask`](super::Sabotage::LoseAckedTask): a task store
//! in front of the gateway's that acknowledges one new task and never stores it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ww_sched::sched::{
    Batch, BatchReport, DeletedTask, ModuleRefs, Op, PurgeOutcome, Run, SharedStore, Store,
    StoreError, Task, TaskHeader, TaskId, TaskStatus, TaskStore,
};

/// The task the store lost: kept in this process's memory only, as a write
/// cache that never writes back would keep it. Readers of this incarnation
/// see it as committed; the store on disk never had it, so a restart loses it.
#[derive(Debug)]
struct Lost {
    header: TaskHeader,
    runs: BTreeMap<u32, Run>,
}

impl Lost {
    fn id(&self) -> &TaskId {
        &self.header.spec.id
    }

    /// A later write of the lost task: applied here, never to the store.
    fn update(&mut self, header: &TaskHeader, runs: &[Run]) {
        self.header = header.clone();
        self.runs
            .extend(runs.iter().map(|run| (run.index, run.clone())));
    }

    fn runs(&self, offset: u32, limit: usize) -> Vec<Run> {
        self.runs
            .range(offset..)
            .map(|(_, run)| run.clone())
            .take(limit)
            .collect()
    }
}

/// The gateway's store behind a decorator that strikes once among all those
/// sharing `struck`: the first committed batch that puts a new task commits
/// without that task (and without every later write or purge of it), and
/// reports success. The gateway acknowledges the task; this incarnation keeps
/// answering reads of it (header, runs, idempotency key) from memory, so
/// nothing looks wrong until the gateway restarts and the task is gone.
/// Everything else goes to the wrapped store unchanged.
#[derive(Debug)]
pub struct LoseOneTask {
    inner: Store,
    struck: Arc<AtomicBool>,
    lost: Mutex<Option<Lost>>,
}

impl LoseOneTask {
    /// Wraps `inner`; the bug strikes once among all wrappers sharing
    /// `struck` (one per run, across the gateway's restarts).
    pub fn new(inner: Store, struck: Arc<AtomicBool>) -> LoseOneTask {
        LoseOneTask {
            inner,
            struck,
            lost: Mutex::new(None),
        }
    }

    fn lost(&self) -> MutexGuard<'_, Option<Lost>> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lost task's header, if `id` names it.
    fn lost_header(&self, id: &TaskId) -> Option<TaskHeader> {
        self.lost()
            .as_ref()
            .filter(|lost| lost.id() == id)
            .map(|lost| lost.header.clone())
    }

    /// The ops of `batch` that reach the store, and the lost task as it is
    /// once the batch commits (`None` when the batch does not touch it);
    /// `purged` is set if the batch purges the lost task.
    fn strip(
        &self,
        lost: Option<&Lost>,
        batch: &Batch,
        purged: &mut Option<DeletedTask>,
    ) -> Option<(Vec<Op>, Option<Lost>)> {
        let lost_id = lost.map(|lost| lost.id().clone());
        let touches = |op: &Op| match op {
            Op::PutTask { header, new, .. } => match &lost_id {
                Some(id) => header.spec.id == *id,
                None => *new && !self.struck.load(Ordering::Acquire),
            },
            Op::Purge { id, .. } => lost_id.as_ref() == Some(id),
            _ => false,
        };
        if !batch.ops.iter().any(touches) {
            return None;
        }
        let mut next = lost.map(|lost| Lost {
            header: lost.header.clone(),
            runs: lost.runs.clone(),
        });
        let strike = lost_id.is_none() && !self.struck.load(Ordering::Acquire);
        let mut kept = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            match op {
                Op::PutTask { header, runs, new } => {
                    if let Some(lost) = next.as_mut().filter(|l| *l.id() == header.spec.id) {
                        lost.update(header, runs);
                    } else if *new && strike && next.is_none() {
                        tracing::warn!(id = %header.spec.id, "sabotage: a new task is acknowledged but never stored");
                        next = Some(Lost {
                            header: (**header).clone(),
                            runs: runs.iter().map(|r| (r.index, r.clone())).collect(),
                        });
                    } else {
                        kept.push(op.clone());
                    }
                }
                Op::Purge { id, .. } if next.as_ref().is_some_and(|l| l.id() == id) => {
                    let gone = next.take().map(|l| l.header.spec.module_hash);
                    *purged = gone.map(|module_hash| DeletedTask {
                        id: id.clone(),
                        module_hash,
                    });
                }
                other => kept.push(other.clone()),
            }
        }
        Some((kept, next))
    }
}

impl TaskStore for LoseOneTask {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        let mut lost = self.lost();
        let mut purged = None;
        let Some((ops, next)) = self.strip(lost.as_ref(), batch, &mut purged) else {
            return self.inner.commit(batch);
        };
        let mut report = self.inner.commit(&Batch { ops })?;
        // Struck only once the stripped batch is committed: a failed commit
        // was never acknowledged, so it lost nothing.
        if next.is_some() {
            self.struck.store(true, Ordering::Release);
        }
        *lost = next;
        if let Some(deleted) = purged {
            report
                .purged
                .push((deleted.id.clone(), PurgeOutcome::Purged));
            report.deleted.push(deleted);
        }
        Ok(report)
    }

    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        match self.lost_header(id) {
            Some(header) => Ok(Some(header)),
            None => self.inner.header(id),
        }
    }

    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        match self.lost().as_ref().filter(|lost| lost.id() == id) {
            Some(lost) => Ok(lost.runs(offset, limit)),
            None => self.inner.runs(id, offset, limit),
        }
    }

    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        match self.lost().as_ref().filter(|lost| lost.id() == id) {
            Some(lost) => Ok(Some((lost.header.clone(), lost.runs(offset, limit)))),
            None => self.inner.task_page(id, offset, limit),
        }
    }

    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        // Lists come from the store alone: the lost task is missing there,
        // another way for the checks to notice it.
        self.inner.list(status, after, offset, limit)
    }

    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.inner.open_tasks()
    }

    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.module(hash)
    }

    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        let mut refs = self.inner.module_refs()?;
        // The gateway counts the lost task among its module's users; so does
        // this store while it pretends to hold it.
        if let Some(lost) = self.lost().as_ref() {
            if let Some(refs) = refs.get_mut(&lost.header.spec.module_hash) {
                refs.tasks += 1;
            }
        }
        Ok(refs)
    }

    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let lost = self.lost().as_ref().and_then(|lost| {
            (lost.header.spec.idempotency_key.as_deref() == Some(key)).then(|| lost.id().clone())
        });
        match lost {
            Some(id) => Ok(Some(id)),
            None => self.inner.idempotency(key),
        }
    }

    fn finished_count(&self) -> Result<u64, StoreError> {
        self.inner.finished_count()
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        self.inner.shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;
    use ww_sched::sched::{SchedConfig, Schedule, Scheduler, TaskSpec};

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// A new task `name` as the gateway would put it, with its module.
    fn submission(sched: &mut Scheduler, name: &str) -> Batch {
        let spec = TaskSpec {
            id: TaskId::parse(name).expect("valid id"),
            description: String::new(),
            module_hash: ww::exec::ModuleHash::of(MODULE).0,
            export: "run".into(),
            args: vec![],
            fuel_max: 1 << 20,
            memory_pages_max: 16,
            duration_ms: 10_000,
            schedule: Schedule {
                start_ms: 0,
                delay_ms: 0,
                repeats: 1,
            },
            completions_initial: 0,
            idempotency_key: Some(format!("key-{name}")),
        };
        sched.submit(0, spec.clone()).expect("submit");
        let task = sched.task(&spec.id).expect("task");
        Batch {
            ops: vec![
                Op::PutModule {
                    hash: spec.module_hash,
                    bytes: Arc::new(MODULE.to_vec()),
                    now_ms: 0,
                },
                Op::PutTask {
                    header: Box::new(task.header()),
                    runs: task.runs.clone(),
                    new: true,
                },
            ],
        }
    }

    #[test]
    fn the_first_new_task_is_acknowledged_shown_and_gone_after_a_restart() {
        let disk = SimDisk::new();
        let struck = Arc::new(AtomicBool::new(false));
        let mut sched = Scheduler::new(SchedConfig::default());
        let (lost, kept) = (
            TaskId::parse("lost").unwrap(),
            TaskId::parse("kept").unwrap(),
        );
        {
            let open = Store::open_on(disk.backend(), "disk").expect("open");
            let store = LoseOneTask::new(open, struck.clone());
            store
                .commit(&submission(&mut sched, "lost"))
                .expect("acknowledged");
            store
                .commit(&submission(&mut sched, "kept"))
                .expect("stored");
            // This incarnation shows the lost task as committed.
            assert!(store.header(&lost).unwrap().is_some());
            assert_eq!(store.idempotency("key-lost").unwrap(), Some(lost.clone()));
            assert_eq!(
                store.module_refs().unwrap().values().next().unwrap().tasks,
                2
            );
            assert!(store.task_page(&lost, 0, 10).unwrap().is_some());
        }
        // A restart (all was synced: no crash needed) finds only the other.
        let open = Store::open_on(disk.backend(), "disk").expect("reopen");
        let store = LoseOneTask::new(open, struck);
        assert!(store.header(&lost).unwrap().is_none());
        assert!(store.header(&kept).unwrap().is_some());
        // Struck once per run: the next new task is stored.
        store
            .commit(&submission(&mut sched, "next"))
            .expect("stored");
        assert!(store
            .inner
            .header(&TaskId::parse("next").unwrap())
            .unwrap()
            .is_some());
    }
}
