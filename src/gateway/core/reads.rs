//! Store reads in flight: what each is for, and where its result goes. The
//! core never waits for one; it goes on with other inputs, and a result that
//! comes after the core fail-stopped is dropped (whatever waited for it was
//! refused then).

use super::{Core, Held, ReadId, ReadResult, RequestId};
use crate::sched::TaskId;

/// What a read in flight is for.
#[derive(Debug)]
pub(super) enum Pending {
    /// A check of the first submission waiting (`submit.rs`).
    Submission,
    /// A cancel of a task this gateway does not hold.
    CancelHeader {
        /// The cancel.
        request: RequestId,
        /// The task.
        id: TaskId,
    },
    /// A cancel asked of another gateway's task, through the store.
    CancelRequested {
        /// The cancel.
        request: RequestId,
        /// The task.
        id: TaskId,
    },
    /// A cancel waiting for another gateway to make the task final.
    CancelFinal {
        /// The cancel.
        request: RequestId,
        /// The task.
        id: TaskId,
    },
    /// A released answer about a task the batch did not write: shown as the
    /// store holds it.
    Render(Held),
    /// A submission whose idempotency key another gateway stored first:
    /// answered with that gateway's task.
    TakenKey {
        /// The submission.
        request: RequestId,
        /// The task this gateway dropped.
        id: TaskId,
        /// The task the key names.
        other: TaskId,
    },
    /// The bytes of a module that runs wait for (`Core::module_waits`).
    Module([u8; 32]),
    /// The finished count, for the health and metrics requests waiting.
    FinishedCount,
    /// The store's module counts, for modules it kept though the mirror
    /// thought them unused.
    ModuleRefs(Vec<[u8; 32]>),
    /// Owned tasks not held, to take up.
    OwnedTasks,
    /// Whatever waited for it was refused when the core fail-stopped.
    Refused {
        /// It was a cancel waiting for another gateway (counted).
        cancel_waiting: bool,
    },
}

impl Core {
    /// Sends a read's result where it is awaited.
    pub(super) fn read_done(&mut self, id: ReadId, result: ReadResult) {
        let Some(pending) = self.reads.remove(&id) else {
            debug_assert!(false, "result of read {id:?}, which was not asked for");
            return;
        };
        if self.plan.failure().is_some() {
            // Stopped: what waited was refused; nothing read is shown.
            match pending {
                Pending::OwnedTasks => self.owned_read_done(),
                Pending::Refused {
                    cancel_waiting: true,
                } => self.cancels_waiting = self.cancels_waiting.saturating_sub(1),
                _ => {}
            }
            return;
        }
        match (pending, result) {
            (Pending::Submission, result) => self.submission_read(result),
            (Pending::CancelHeader { request, id }, ReadResult::Header(result)) => {
                self.cancel_header_read(request, id, result);
            }
            (Pending::CancelRequested { request, id }, ReadResult::CancelRequested(result)) => {
                self.cancel_requested(request, id, result);
            }
            (Pending::CancelFinal { request, id }, ReadResult::Header(result)) => {
                self.cancel_final(request, id, result);
            }
            (Pending::Render(held), ReadResult::Header(result)) => {
                self.render(held, result);
                self.forget_deleted_unless_rendering();
            }
            (Pending::TakenKey { request, id, other }, ReadResult::Header(result)) => {
                self.taken_key(request, id, other, result);
            }
            (Pending::Module(hash), ReadResult::Module(result)) => self.module_read(hash, result),
            (Pending::FinishedCount, ReadResult::FinishedCount(result)) => self.count_read(result),
            (Pending::ModuleRefs(hashes), ReadResult::ModuleRefs(result)) => {
                self.module_refs_read(hashes, result);
            }
            (Pending::OwnedTasks, ReadResult::OwnedTasks(tasks)) => {
                self.owned_read_done();
                self.adopt(tasks);
            }
            (pending, result) => {
                debug_assert!(false, "{pending:?} answered with {result:?}");
                tracing::error!(?pending, ?result, "a store read answered with another kind");
            }
        }
    }

    /// The core fail-stopped: every request waiting for a read is refused
    /// now (its read's result, when it comes, is dropped).
    pub(super) fn refuse_reading(&mut self, cause: &str) {
        let storage = || crate::gateway::ApiError::Storage(format!("not acknowledged: {cause}"));
        let mut refusals = Vec::new();
        for pending in self.reads.values_mut() {
            let cancel_waiting = matches!(pending, Pending::CancelFinal { .. });
            let refusal = match std::mem::replace(pending, Pending::Refused { cancel_waiting }) {
                Pending::CancelHeader { request, .. }
                | Pending::CancelRequested { request, .. }
                | Pending::CancelFinal { request, .. } => super::Effect::Answer {
                    request,
                    answer: Box::new(super::Answer::Cancel(Err(storage()))),
                },
                Pending::TakenKey { request, .. } => super::Effect::Answer {
                    request,
                    answer: Box::new(super::Answer::Submit(Err(storage()))),
                },
                Pending::Render(held) => held.refusal(cause),
                // Counted until its result comes back.
                Pending::OwnedTasks => {
                    *pending = Pending::OwnedTasks;
                    continue;
                }
                // Whoever waits is refused below, or nobody does.
                _ => continue,
            };
            refusals.push(refusal);
        }
        self.out.extend(refusals);
        self.refuse_submissions(cause);
        for (request, health) in std::mem::take(&mut self.count_waiters) {
            let answer = if health {
                super::Answer::Health(self.health_report(
                    crate::gateway::commands::HealthStatus::Failed,
                    Some(cause.to_string()),
                ))
            } else {
                super::Answer::Metrics(Err(crate::gateway::ApiError::Storage(cause.to_string())))
            };
            self.answer(request, answer);
        }
    }

    /// Reads in flight (tests and invariants).
    pub fn reads_in_flight(&self) -> usize {
        self.reads.len()
    }
}
