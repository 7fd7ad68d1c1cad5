//! The commit planner: which writes go into the next batch, and which answers
//! wait for which batch. Sans-IO: changed tasks, queued operations, held
//! answers and commit results in; batches and released or refused answers out.
//!
//! Rules it keeps:
//! - one batch in flight at a time; the next one forms meanwhile (pipelining);
//! - an answer is released only by the commit of the batch formed after it was
//!   held, so whatever it acknowledges is committed;
//! - a task is written as a header plus the runs whose stored copy differs
//!   (a final run never changes, so only a mark is kept for it);
//! - a task written final is handed back once that batch commits, to be
//!   forgotten: finished tasks live in the store only;
//! - after a failed commit nothing more is formed or released: every held
//!   answer is handed back to be refused (fail-stop).

use std::collections::{BTreeMap, BTreeSet};

use crate::sched::{BatchReport, Op, Run, RunStatus, Task, TaskHeader, TaskId};

/// What the store holds of one run, as of the batches formed so far.
#[derive(Debug)]
enum StoredRun {
    /// Not written yet.
    Unwritten,
    /// Written in this non-final state, which may still change.
    Open(Box<Run>),
    /// Written final: it never changes again, so no copy is kept.
    Final,
}

impl StoredRun {
    fn of(run: &Run) -> Self {
        if run.status.is_final() {
            StoredRun::Final
        } else {
            StoredRun::Open(Box::new(run.clone()))
        }
    }

    /// Whether the store holds `run` as it is now.
    fn holds(&self, run: &Run) -> bool {
        match self {
            StoredRun::Unwritten => false,
            StoredRun::Open(stored) => **stored == *run,
            StoredRun::Final => {
                debug_assert!(run.status.is_final(), "a final run became {:?}", run.status);
                true
            }
        }
    }
}

/// The first run of `task` that differs from what the store holds but is
/// not among the reported `indexes`: a scheduler bug that would lose the
/// change. Scans every run, so it is only asked in debug builds and of
/// tasks small enough that the scan stays cheap.
fn unreported_change(task: &Task, stored: &[StoredRun], indexes: &BTreeSet<u32>) -> Option<u32> {
    const SCANNED_RUNS_MAX: usize = 4096;
    if task.runs.len() > SCANNED_RUNS_MAX {
        return None;
    }
    task.runs
        .iter()
        .filter(|r| !indexes.contains(&r.index))
        .find(|r| !stored.get(r.index as usize).is_some_and(|s| s.holds(r)))
        .map(|r| r.index)
}

/// The batch being committed.
#[derive(Debug)]
struct InFlight<A> {
    seq: u64,
    answers: Vec<A>,
    /// Tasks this batch writes final.
    finished: Vec<TaskId>,
    /// The header of each task this batch writes.
    written: BTreeMap<TaskId, TaskHeader>,
    /// Runs this batch writes final (each run once: a final run is not written again).
    ended: Vec<RunEnded>,
    /// Every run this batch writes, in its written state.
    runs: Vec<RunWritten>,
}

/// A batch to commit, numbered.
#[derive(Debug)]
pub struct Formed {
    /// Its number, handed back with its result.
    pub seq: u64,
    /// What to write.
    pub batch: crate::sched::Batch,
}

/// What a successful commit lets go.
#[derive(Debug)]
pub struct Released<A> {
    /// Answers to send now.
    pub answers: Vec<A>,
    /// Tasks now stored final: forget them.
    pub finished: Vec<TaskId>,
    /// The header of each task the batch wrote, as committed: an answer about
    /// one of them shows it without reading the store.
    pub written: BTreeMap<TaskId, TaskHeader>,
    /// What the store reported.
    pub report: BatchReport,
    /// Runs now stored final, each handed back once (for metrics).
    pub ended: Vec<RunEnded>,
    /// Every run the batch wrote, in its committed state (for live events).
    pub runs: Vec<RunWritten>,
}

/// A run a batch wrote: which, and in what state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunWritten {
    /// Its task.
    pub task: TaskId,
    /// Its index.
    pub index: u32,
    /// Its attempt.
    pub attempt: u32,
    /// Its status as written.
    pub status: RunStatus,
}

/// How a run stored final ended: what a metric needs of it (not its stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnded {
    /// Its final status.
    pub status: RunStatus,
    /// When its last attempt started, if one did.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub finished_ms: Option<u64>,
}

impl RunEnded {
    fn of(run: &Run) -> Self {
        RunEnded {
            status: run.status,
            started_ms: run.started_ms,
            finished_ms: run.finished_ms,
        }
    }
}

/// The planner; `A` is whatever an answer is (the model test uses its own).
#[derive(Debug)]
pub struct Planner<A> {
    /// Changed tasks, each with the indexes of its runs that changed.
    dirty: BTreeMap<TaskId, BTreeSet<u32>>,
    ops: Vec<Op>,
    stored: BTreeMap<TaskId, Vec<StoredRun>>,
    waiting: Vec<A>,
    in_flight: Option<InFlight<A>>,
    next_seq: u64,
    failed: Option<String>,
}

/// Why nothing more is committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store failed: {0}; nothing is acknowledged any more")]
pub struct PlanFailed(pub String);

impl<A> Planner<A> {
    /// A planner whose store holds `restored` (unfinished tasks, as loaded).
    pub fn new<'t>(restored: impl IntoIterator<Item = &'t Task>) -> Self {
        let stored = restored
            .into_iter()
            .map(|t| {
                (
                    t.spec.id.clone(),
                    t.runs.iter().map(StoredRun::of).collect(),
                )
            })
            .collect();
        Planner {
            dirty: BTreeMap::new(),
            ops: Vec::new(),
            stored,
            waiting: Vec::new(),
            in_flight: None,
            next_seq: 1,
            failed: None,
        }
    }

    /// A task that is not this gateway's after all (another stored it first):
    /// nothing more of it is written.
    pub fn withdraw(&mut self, id: &TaskId) {
        self.dirty.remove(id);
        self.stored.remove(id);
    }

    /// A task taken over from the store, which holds it as `task` is now.
    pub fn adopted(&mut self, task: &Task) {
        self.stored.insert(
            task.spec.id.clone(),
            task.runs.iter().map(StoredRun::of).collect(),
        );
    }

    /// The task changed, and with it its runs `runs`: write them in the
    /// next batch. Only those runs are looked at, so a batch costs what
    /// changed, not the size of the tasks it touches.
    pub fn changed(&mut self, id: TaskId, runs: impl IntoIterator<Item = u32>) {
        self.dirty.entry(id).or_default().extend(runs);
    }

    /// Adds an operation (module, purge, retention) to the next batch.
    pub fn queue(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Holds `answer` until the next batch commits; hands it back when the
    /// store has failed, to be refused at once.
    pub fn hold(&mut self, answer: A) -> Result<(), (A, PlanFailed)> {
        match &self.failed {
            Some(cause) => Err((answer, PlanFailed(cause.clone()))),
            None => {
                self.waiting.push(answer);
                Ok(())
            }
        }
    }

    /// Why the store failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The number of the batch in flight, if one is.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.seq)
    }

    /// Whether anything waits for a batch.
    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || !self.ops.is_empty() || !self.waiting.is_empty()
    }

    /// Forms the next batch from the current tasks (`task` looks one up), if
    /// none is in flight, the store has not failed, and anything waits.
    pub fn form<'t>(&mut self, task: impl Fn(&TaskId) -> Option<&'t Task>) -> Option<Formed> {
        if self.failed.is_some() || self.in_flight.is_some() || !self.has_work() {
            return None;
        }
        let mut ops = std::mem::take(&mut self.ops);
        let mut finished = Vec::new();
        let mut written = BTreeMap::new();
        let mut ended = Vec::new();
        let mut runs_written = Vec::new();
        for (id, indexes) in std::mem::take(&mut self.dirty) {
            let Some(task) = task(&id) else {
                debug_assert!(false, "changed task {id} is not held");
                continue;
            };
            let new = !self.stored.contains_key(&id);
            let stored = self.stored.remove(&id).unwrap_or_default();
            let runs: Vec<Run> = indexes
                .iter()
                .filter_map(|&index| task.runs.get(index as usize))
                .filter(|r| !stored.get(r.index as usize).is_some_and(|s| s.holds(r)))
                .cloned()
                .collect();
            debug_assert!(
                unreported_change(task, &stored, &indexes).is_none(),
                "task {id}: run {:?} changed but the scheduler did not report it",
                unreported_change(task, &stored, &indexes)
            );
            ended.extend(
                runs.iter()
                    .filter(|r| r.status.is_final())
                    .map(RunEnded::of),
            );
            runs_written.extend(runs.iter().map(|r| RunWritten {
                task: id.clone(),
                index: r.index,
                attempt: r.attempt,
                status: r.status,
            }));
            if task.status.is_final() {
                finished.push(id.clone());
            } else {
                let mut now = stored;
                if now.len() < task.runs.len() {
                    now.resize_with(task.runs.len(), || StoredRun::Unwritten);
                }
                for run in &runs {
                    now[run.index as usize] = StoredRun::of(run);
                }
                self.stored.insert(id.clone(), now);
            }
            let header = task.header();
            written.insert(id.clone(), header.clone());
            ops.push(Op::PutTask {
                header: Box::new(header),
                runs,
                new,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let answers = std::mem::take(&mut self.waiting);
        self.in_flight = Some(InFlight {
            seq,
            answers,
            finished,
            written,
            ended,
            runs: runs_written,
        });
        Some(Formed {
            seq,
            batch: crate::sched::Batch { ops },
        })
    }

    /// Batch `seq` committed: its answers go, its finished tasks are stored.
    pub fn committed(&mut self, seq: u64, report: BatchReport) -> Released<A> {
        let flight = self.in_flight.take();
        assert!(
            flight.as_ref().is_some_and(|f| f.seq == seq),
            "commit result for batch {seq}, but {:?} is in flight",
            flight.as_ref().map(|f| f.seq)
        );
        let flight = flight.expect("checked above");
        Released {
            answers: flight.answers,
            finished: flight.finished,
            written: flight.written,
            report,
            ended: flight.ended,
            runs: flight.runs,
        }
    }

    /// Batch `seq` failed: nothing is formed or released from now on, and
    /// every held answer comes back to be refused.
    pub fn failed(&mut self, seq: u64, cause: String) -> Vec<A> {
        debug_assert!(
            self.in_flight.as_ref().is_none_or(|f| f.seq == seq),
            "failure of batch {seq} while another is in flight"
        );
        self.failed.get_or_insert(cause);
        let mut answers = self.in_flight.take().map(|f| f.answers).unwrap_or_default();
        answers.append(&mut self.waiting);
        self.dirty.clear();
        self.ops.clear();
        answers
    }
}
