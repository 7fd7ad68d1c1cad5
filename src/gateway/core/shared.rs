//! The core's side of a store shared by several gateways: the lease window
//! and claim room it keeps for the lease keeper, tasks taken over (claimed, or
//! owned but not held), and cancels asked of or by other gateways.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{internal, Core, CANCELS_WAITING_MAX, CANCEL_ELSEWHERE_WAIT, OWNED_TAKE_UP_MAX};
use crate::gateway::ApiError;
use crate::sched::{StoreError, Task, TaskHeader, TaskId};

impl Core {
    /// On a shared store: starts runs only within the lease window `until`
    /// says, and keeps `room` at the number of tasks it may still take over.
    pub fn on_shared_store(
        &mut self,
        until: crate::gateway::shared::ActUntil,
        room: crate::gateway::shared::ClaimRoom,
    ) {
        self.act_until = Some(until);
        self.claim_room = Some(room);
        self.update_claim_room();
    }

    pub(super) fn update_claim_room(&self) {
        if let Some(room) = &self.claim_room {
            room.set(
                self.config
                    .sched
                    .open_tasks_max
                    .saturating_sub(self.sched.tasks_held()),
            );
        }
    }

    /// Another gateway asked, through the store, to cancel this gateway's
    /// task: answered there, once this commits.
    pub(super) fn cancel_asked(&mut self, id: &TaskId) {
        if self.sched.task(id).is_some_and(|t| !t.status.is_final()) {
            match self.sched.cancel((self.clock)(), id) {
                Ok(effects) => self.apply(effects),
                Err(e) => tracing::warn!(task = %id, error = %e, "asked cancel not applied"),
            }
        }
    }

    /// Asks the gateway that owns `id` to cancel it, through the shared store,
    /// and answers once the store shows the task final: so no run of it
    /// starts after the answer. Waits at most [`CANCEL_ELSEWHERE_WAIT`] (the
    /// owner may have died: then its lease runs out and a claimer applies the
    /// request), then answers 503 with the request left standing.
    pub(super) fn cancel_elsewhere(
        &mut self,
        id: TaskId,
        reply: oneshot::Sender<Result<TaskHeader, ApiError>>,
    ) {
        let now = (self.clock)();
        let asked = match self.store.shared() {
            Some(shared) => shared.request_cancel(&id, now),
            None => return,
        };
        match asked {
            Err(e) => {
                let _ = reply.send(Err(self.read_failed(e)));
            }
            Ok(false) => {
                // Finished meanwhile: answer with what the store holds.
                let answer = match self.store.header(&id) {
                    Ok(Some(header)) => Ok(header),
                    Ok(None) => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
                    Err(e) => Err(self.read_failed(e)),
                };
                let _ = reply.send(answer);
            }
            Ok(true) if self.cancels_waiting.get() >= CANCELS_WAITING_MAX => {
                let _ = reply.send(Err(ApiError::Busy(format!(
                    "{CANCELS_WAITING_MAX} cancels already wait for other gateways; \
                     this one is asked and stands: ask again to see it applied"
                ))));
            }
            Ok(true) => {
                let store = self.store.clone();
                let waiting = self.cancels_waiting.clone();
                waiting.set(waiting.get() + 1);
                tokio::task::spawn_local(async move {
                    // Counted out however the wait ends (answered, or dropped).
                    struct Waiting(Rc<std::cell::Cell<usize>>);
                    impl Drop for Waiting {
                        fn drop(&mut self) {
                            self.0.set(self.0.get().saturating_sub(1));
                        }
                    }
                    let _waiting = Waiting(waiting);
                    let deadline = tokio::time::Instant::now() + CANCEL_ELSEWHERE_WAIT;
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let read = {
                            let (store, id) = (store.clone(), id.clone());
                            tokio::task::spawn_blocking(move || store.header(&id)).await
                        };
                        let answer = match read {
                            Ok(Ok(Some(header))) if header.status.is_final() => Ok(header),
                            Ok(Ok(Some(_))) if tokio::time::Instant::now() < deadline => continue,
                            Ok(Ok(Some(_))) => Err(ApiError::Busy(format!(
                                "task {:?} is run by another gateway, which has not applied the \
                                 cancel within {} s; the request stands: ask again to see it applied",
                                id.as_str(),
                                CANCEL_ELSEWHERE_WAIT.as_secs()
                            ))),
                            Ok(Ok(None)) => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
                            Ok(Err(e)) => Err(ApiError::Storage(format!("store read failed: {e}"))),
                            Err(e) => Err(internal(e)),
                        };
                        let _ = reply.send(answer);
                        return;
                    }
                });
            }
        }
    }

    /// Takes up the tasks among `ids` (owned here, as the store said a moment
    /// ago) that this gateway does not hold: claimed, but the claim's answer
    /// was lost. Each is read again now, on the core's thread, so one that
    /// finished meanwhile (and so left `sched` after its commit) is seen final
    /// and left alone; at most [`OWNED_TAKE_UP_MAX`] per call, the rest at the
    /// next comparison.
    pub(super) fn take_up_owned(&mut self, ids: Vec<TaskId>) {
        let Some(shared) = self.store.shared() else {
            debug_assert!(false, "owned tasks listed without a shared store");
            return;
        };
        let unheld: Vec<TaskId> = ids
            .into_iter()
            .filter(|id| self.sched.task(id).is_none())
            .take(OWNED_TAKE_UP_MAX)
            .collect();
        let mut tasks = Vec::with_capacity(unheld.len());
        for id in unheld {
            match shared.owned_task(&id) {
                Ok(Some(task)) => {
                    tracing::warn!(task = %id, "owned here but not held (a claim's answer was lost): taken up");
                    tasks.push(task);
                }
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => {
                    // Left for an operator; the others are still taken up.
                    tracing::error!(task = %id, error = %e, "owned task is corrupt; not taken up");
                }
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "owned task not read; the next comparison retries");
                    break;
                }
            }
        }
        self.adopt(tasks);
    }

    /// Takes over tasks claimed from a shared store, as a restart would.
    pub(super) fn adopt(&mut self, tasks: Vec<Task>) {
        let now = (self.clock)();
        let mut taken = Vec::with_capacity(tasks.len());
        for task in tasks {
            if self.sched.task(&task.spec.id).is_some() {
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
        if taken.is_empty() {
            return;
        }
        let effects = self.sched.take_over(now, taken);
        self.apply(effects);
    }
}
