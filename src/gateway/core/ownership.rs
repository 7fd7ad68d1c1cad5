//! The core's side of a store shared by several gateways: tasks taken over
//! (claimed, or owned but not held), and cancels asked of or by other
//! gateways. The lease window is the driver's to watch (it owns the clock
//! the lease keeper measures it on); the claim room is told it at each turn.

use super::reads::Pending;
use super::{
    Answer, Core, Read, RequestId, CANCELS_WAITING_MAX, CANCEL_ELSEWHERE_WAIT_MS, OWNED_TAKE_UP_MAX,
};
use crate::gateway::ApiError;
use crate::sched::{StoreError, Task, TaskHeader, TaskId};

impl Core {
    /// Another gateway asked, through the store, to cancel this gateway's
    /// task: answered there, once this commits.
    pub(super) fn cancel_asked(&mut self, id: &TaskId) {
        if self.sched.task(id).is_some_and(|t| !t.status.is_final()) {
            match self.sched.cancel(self.now_ms, id) {
                Ok(effects) => self.apply(effects),
                Err(e) => tracing::warn!(task = %id, error = %e, "asked cancel not applied"),
            }
        }
    }

    /// Asks the gateway that owns `id` to cancel it, through the shared store.
    pub(super) fn cancel_elsewhere(&mut self, request: RequestId, id: TaskId) {
        let read = Read::RequestCancel {
            id: id.clone(),
            now_ms: self.now_ms,
        };
        self.read(read, Pending::CancelRequested { request, id });
    }

    /// The cancel was asked (or the task was final already). It is answered
    /// once the store shows the task final, so no run of it starts after the
    /// answer; the wait is at most [`CANCEL_ELSEWHERE_WAIT_MS`] (the owner may
    /// have died: then its lease runs out and a claimer applies the request),
    /// then 503 with the request left standing.
    pub(super) fn cancel_requested(
        &mut self,
        request: RequestId,
        id: TaskId,
        asked: Result<bool, StoreError>,
    ) {
        match asked {
            Err(e) => {
                let error = self.read_failed(e);
                self.answer(request, Answer::Cancel(Err(error)));
            }
            // Finished meanwhile: answer with what the store holds.
            Ok(false) => {
                self.read(
                    Read::Header(id.clone()),
                    Pending::CancelFinal { request, id },
                );
                self.cancels_waiting += 1;
            }
            Ok(true) if self.cancels_waiting >= CANCELS_WAITING_MAX => {
                let busy = ApiError::Busy(format!(
                    "{CANCELS_WAITING_MAX} cancels already wait for other gateways; \
                     this one is asked and stands: ask again to see it applied"
                ));
                self.answer(request, Answer::Cancel(Err(busy)));
            }
            Ok(true) => {
                let read = Read::AwaitFinal {
                    id: id.clone(),
                    wait_ms: CANCEL_ELSEWHERE_WAIT_MS,
                };
                self.read(read, Pending::CancelFinal { request, id });
                self.cancels_waiting += 1;
            }
        }
    }

    /// The task another gateway was asked to cancel, as the store shows it
    /// now (final, or still not after the longest wait).
    pub(super) fn cancel_final(
        &mut self,
        request: RequestId,
        id: TaskId,
        header: Result<Option<TaskHeader>, StoreError>,
    ) {
        self.cancels_waiting = self.cancels_waiting.saturating_sub(1);
        let answer = match header {
            Ok(Some(header)) if header.status.is_final() => Ok(header),
            Ok(Some(_)) => Err(ApiError::Busy(format!(
                "task {:?} is run by another gateway, which has not applied the cancel \
                 within {} s; the request stands: ask again to see it applied",
                id.as_str(),
                CANCEL_ELSEWHERE_WAIT_MS / 1000
            ))),
            Ok(None) => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
            Err(e) => Err(self.read_failed(e)),
        };
        self.answer(request, Answer::Cancel(answer));
    }

    /// Takes up the tasks among `ids` (owned here, as the store said a moment
    /// ago) that this gateway does not hold: claimed, but the claim's answer
    /// was lost. Each is read again, whole, so one that finished meanwhile
    /// (and so left the scheduler after its commit) is seen final and left
    /// alone; at most [`OWNED_TAKE_UP_MAX`] per call, the rest at the next
    /// comparison.
    pub(super) fn take_up_owned(&mut self, ids: Vec<TaskId>) {
        if !self.config.shared() {
            debug_assert!(false, "owned tasks listed without a shared store");
            return;
        }
        let unheld: Vec<TaskId> = ids
            .into_iter()
            .filter(|id| self.sched.task(id).is_none())
            .take(OWNED_TAKE_UP_MAX)
            .collect();
        if unheld.is_empty() {
            return;
        }
        self.owned_reads += 1;
        self.read(Read::OwnedTasks(unheld), Pending::OwnedTasks);
    }

    /// An owned-tasks read came back (taken up, or dropped after a stop).
    pub(super) fn owned_read_done(&mut self) {
        self.owned_reads = self.owned_reads.saturating_sub(1);
    }

    /// Takes over tasks claimed from a shared store, as a restart would. A
    /// task forgotten since an owned-tasks read in flight began was read
    /// before it finished: it is not taken up again.
    pub(super) fn adopt(&mut self, tasks: Vec<Task>) {
        let now = self.now_ms;
        let mut taken = Vec::with_capacity(tasks.len());
        for task in tasks {
            if self.sched.task(&task.spec.id).is_some()
                || self.forgotten_meanwhile.contains(&task.spec.id)
            {
                // Claimed while held: the store says it is ours, so it is.
                continue;
            }
            self.plan.adopted(&task);
            self.modules.adopted(&task.spec.module_hash);
            if let Some(key) = &task.spec.idempotency_key {
                self.keys.insert(key.clone(), task.spec.id.clone());
            }
            tracing::info!(task = %task.spec.id, runs = task.runs.len(), "task taken over from a gateway whose lease expired");
            taken.push(task);
        }
        if self.owned_reads == 0 {
            self.forgotten_meanwhile.clear();
        }
        if taken.is_empty() {
            return;
        }
        let effects = self.sched.take_over(now, taken);
        self.apply(effects);
    }
}
