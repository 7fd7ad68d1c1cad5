//! API requests: cancels, purges, uploads, the pool, health and metrics
//! (submissions have `submit.rs`). A request that acknowledges a change is
//! held for the next batch; one that needs the store asks for a read and is
//! answered when it comes back, while the core goes on.

use std::sync::Arc;

use super::reads::Pending;
use super::{Answer, Core, Held, Read, Request, RequestId};
use crate::gateway::commands::{HealthReport, HealthStatus};
use crate::gateway::metrics::MetricsSnapshot;
use crate::gateway::views::WorkerRow;
use crate::gateway::ApiError;
use crate::sched::{Op, StoreError, TaskId, TaskStatus};

/// The 503 answered while the store is out of reach.
fn unreachable() -> ApiError {
    ApiError::Busy(
        "the task store cannot be reached; nothing was acknowledged: retry shortly".into(),
    )
}

/// The refusal of `request` with `error`, in the answer's kind.
pub(super) fn refusal(request: &Request, error: ApiError) -> Answer {
    match request {
        Request::Submit { .. } => Answer::Submit(Err(error)),
        Request::Cancel { .. } => Answer::Cancel(Err(error)),
        Request::Purge { .. } => Answer::Purge(Err(error)),
        Request::PutModule { .. } => Answer::Module(Err(error)),
        Request::Metrics => Answer::Metrics(Err(error)),
        // Never refused: they show the core's own state.
        Request::Workers | Request::Health => {
            debug_assert!(false, "a workers or health request refused");
            Answer::Metrics(Err(error))
        }
    }
}

impl Core {
    /// Handles an API request.
    pub(super) fn request(&mut self, id: RequestId, request: Request) {
        // While the store is out of reach a commit is being retried: nothing
        // new is taken that would need acknowledging (it could not be).
        if !self.reachable && request.acknowledges() {
            let answer = refusal(&request, unreachable());
            return self.answer(id, answer);
        }
        // Stopped: nothing is acknowledged or read again (the API refuses
        // too, but a request may have been queued before the switch tripped).
        if let (Some(cause), true) = (self.plan.failure(), request.acknowledges()) {
            let storage = ApiError::Storage(format!("not acknowledged: {cause}"));
            let answer = refusal(&request, storage);
            return self.answer(id, answer);
        }
        match request {
            Request::Submit {
                task,
                idempotency_key,
            } => self.submission(id, task, idempotency_key),
            Request::Cancel { id: task } => self.cancel(id, task),
            Request::Purge { id: task } => self.purge(id, task),
            Request::PutModule { bytes } => match self.check_module(&bytes) {
                Ok(()) => {
                    let bytes = Arc::new(bytes);
                    let hash = ww::exec::ModuleHash::of(&bytes).0;
                    let now = self.now_ms;
                    self.modules.uploaded(hash, bytes.clone(), now);
                    self.plan.queue(Op::PutModule {
                        hash,
                        bytes,
                        now_ms: now,
                    });
                    self.hold(Held::Module { request: id, hash });
                }
                Err(e) => self.answer(id, Answer::Module(Err(e))),
            },
            Request::Workers => {
                let rows = self
                    .sched
                    .workers()
                    .into_iter()
                    .map(|w| WorkerRow {
                        joined_ms: self.joined.get(&w.worker).copied(),
                        worker: w.worker,
                        slots: w.slots,
                        in_flight: w.in_flight,
                    })
                    .collect();
                self.answer(id, Answer::Workers(rows));
            }
            Request::Health => self.count_for(id, true),
            Request::Metrics => self.count_for(id, false),
        }
    }

    fn cancel(&mut self, request: RequestId, id: TaskId) {
        if self.sched.task(&id).is_some() {
            match self.sched.cancel(self.now_ms, &id) {
                Ok(effects) => {
                    self.apply(effects);
                    self.hold(Held::Cancel { request, id });
                }
                Err(e) => self.answer(
                    request,
                    Answer::Cancel(Err(ApiError::BadRequest(e.to_string()))),
                ),
            }
        } else {
            // Not held: finished (cancelling changes nothing), unknown, or
            // another gateway's (a shared store: asked of its owner).
            self.read(
                Read::Header(id.clone()),
                Pending::CancelHeader { request, id },
            );
        }
    }

    /// The store's header of a task this gateway does not hold, for a cancel.
    pub(super) fn cancel_header_read(
        &mut self,
        request: RequestId,
        id: TaskId,
        result: Result<Option<crate::sched::TaskHeader>, StoreError>,
    ) {
        if self.sched.task(&id).is_some() {
            // Taken over or submitted while the read was in flight: held now.
            return self.cancel(request, id);
        }
        let answer = match result {
            Ok(Some(header)) if !header.status.is_final() && self.config.shared() => {
                return self.cancel_elsewhere(request, id);
            }
            Ok(Some(header)) => Ok(header),
            Ok(None) => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
            Err(e) => Err(self.read_failed(e)),
        };
        self.answer(request, Answer::Cancel(answer));
    }

    fn purge(&mut self, request: RequestId, id: TaskId) {
        let answer = match self.sched.task(&id) {
            // Its final state is still being written: a purge now would be
            // ordered before that write.
            Some(task) if task.status.is_final() => ApiError::Conflict(format!(
                "task {:?} has just finished and is being stored; purge it in a moment",
                id.as_str()
            )),
            Some(task) => ApiError::Conflict(format!(
                "task {:?} is {:?}, not finished; cancel it and purge it once final",
                id.as_str(),
                task.status
            )),
            None => {
                self.plan.queue(Op::Purge {
                    id: id.clone(),
                    now_ms: self.now_ms,
                });
                return self.hold(Held::Purge { request, id });
            }
        };
        self.answer(request, Answer::Purge(Err(answer)));
    }

    /// A health (`health`) or metrics request: both show the store's count
    /// of finished tasks, read off the core's thread. Requests that come
    /// while a count is being read wait for that one.
    fn count_for(&mut self, request: RequestId, health: bool) {
        if let Some(cause) = self.plan.failure() {
            // Stopped: no read (the disk may lie), the failure is the answer.
            let cause = cause.to_string();
            let answer = if health {
                Answer::Health(self.health_report(HealthStatus::Failed, Some(cause)))
            } else {
                Answer::Metrics(Err(ApiError::Storage(cause)))
            };
            return self.answer(request, answer);
        }
        let reading = self
            .reads
            .values()
            .any(|p| matches!(p, Pending::FinishedCount));
        self.count_waiters.push((request, health));
        if !reading {
            self.read(Read::FinishedCount, Pending::FinishedCount);
        }
    }

    /// The finished count came back: every health and metrics request
    /// waiting for it is answered. A store out of reach answers 503 and the
    /// gateway goes on; any other error fail-stops it, as any read does.
    pub(super) fn count_read(&mut self, result: Result<u64, StoreError>) {
        let outcome = match result {
            Ok(count) => {
                self.finished_seen = count;
                Ok(count)
            }
            Err(e) => {
                let transient = e.is_transient();
                let error = self.read_failed(e);
                Err((transient, error))
            }
        };
        for (request, health) in std::mem::take(&mut self.count_waiters) {
            let answer = match (&outcome, health) {
                (Ok(_), true) if self.plan.failure().is_none() => {
                    Answer::Health(self.health_report(HealthStatus::Ok, None))
                }
                (Ok(_), true) => {
                    let cause = self.plan.failure().map(str::to_string);
                    Answer::Health(self.health_report(HealthStatus::Failed, cause))
                }
                (Ok(count), false) => Answer::Metrics(Ok(self.metrics_snapshot(*count))),
                (Err((transient, error)), true) => {
                    let status = if *transient {
                        HealthStatus::Unavailable
                    } else {
                        HealthStatus::Failed
                    };
                    Answer::Health(self.health_report(status, Some(error.to_string())))
                }
                (Err((_, error)), false) => Answer::Metrics(Err(clone_error(error))),
            };
            self.answer(request, answer);
        }
    }

    /// The core's health, as `/healthz` shows it.
    pub(super) fn health_report(
        &self,
        status: HealthStatus,
        store_error: Option<String>,
    ) -> HealthReport {
        HealthReport {
            status,
            store_error,
            commit_in_flight_ms: self
                .in_flight_since_ms
                .map(|since| self.now_ms.saturating_sub(since)),
            commits: self.commits,
            open_tasks: self.sched.tasks_held(),
            modules: self.modules.count(),
            finished_tasks: self.finished_seen,
            workers: self.sched.workers().len(),
        }
    }

    /// The levels a scrape shows, as the core knows them now, with the
    /// store's count of finished tasks.
    fn metrics_snapshot(&self, finished: u64) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        for task in self.sched.tasks() {
            match task.status {
                TaskStatus::Pending => snapshot.tasks_pending += 1,
                TaskStatus::Running => snapshot.tasks_running += 1,
                // Final, being stored: not yet in the store's count (it is
                // forgotten on the turn its commit's result comes back).
                _ => snapshot.tasks_finished += 1,
            }
        }
        snapshot.tasks_finished += finished;
        for worker in self.sched.workers() {
            let (slots, busy) = (u64::from(worker.slots), u64::from(worker.in_flight));
            snapshot.workers += 1;
            snapshot.slots_busy += busy.min(slots);
            snapshot.slots_free += slots.saturating_sub(busy);
        }
        snapshot
    }
}

/// The same error again, for each request waiting on one read.
fn clone_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::Busy(detail) => ApiError::Busy(detail.clone()),
        ApiError::Storage(detail) => ApiError::Storage(detail.clone()),
        other => ApiError::Internal(other.to_string()),
    }
}
