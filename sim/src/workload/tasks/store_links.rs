//! The links between gateways and the shared store: every store call of a
//! gateway passes its link, which the scenario's faults cut, hang or make
//! lossy (`partition`, `hold`, `link_loss` with `b = ["store"]`).
//!
//! The store is ww-sched's [`MemoryStore`] (PostgreSQL's sharing rules, on
//! the simulation's clock). The gateway calls it synchronously on the
//! simulation's one thread (`StorageMode::Inline`), so a link fault is
//! decided per call, in call order, from one seeded generator:
//! - cut: the call fails at once as a refused connection, nothing applied;
//! - held (the store hangs): the call fails as a timeout, nothing applied
//!   (its wait is not simulated: the next call may come at once);
//! - lossy: the call is applied, and its answer lost at the link's rate: a
//!   commit answers "outcome unknown", anything else "no answer".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww_sched::sched::{
    Batch, BatchReport, Lease, MemoryStore, ModuleRefs, Run, SharedStore, StoreError, Task,
    TaskHeader, TaskId, TaskStatus, TaskStore,
};

use crate::derive_seed;
use crate::scenario::format::{Fault, FaultKind, STORE_HOST};

/// The wait a hung store call is given up after, as PostgreSQL's client
/// would report it, in ms.
pub const HUNG_CALL_WAIT_MS: u64 = 2_000;

/// One gateway's link to the store.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    cut: bool,
    held: bool,
    loss: f64,
}

struct Links {
    by_gateway: BTreeMap<String, Link>,
    rng: ChaCha8Rng,
    leases: LeaseTimeline,
}

/// A change the store applied to a gateway's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseEvent {
    /// A registration: a new epoch, live until `until_ms`.
    Registered { epoch: u64, until_ms: u64 },
    /// A renewal: live until `until_ms`.
    Renewed { until_ms: u64 },
    /// A resignation: ended now.
    Resigned,
}

/// Every lease change applied at the store, per gateway host, with the
/// simulation's time: whether a gateway's lease was live at a moment, as a
/// store judging leases by its own clock would say (answers lost or not).
#[derive(Clone, Debug, Default)]
pub struct LeaseTimeline {
    by_gateway: BTreeMap<String, Vec<(u64, LeaseEvent)>>,
}

impl LeaseTimeline {
    fn record(&mut self, gateway: &str, at_ms: u64, event: LeaseEvent) {
        self.by_gateway
            .entry(gateway.to_string())
            .or_default()
            .push((at_ms, event));
    }

    /// `gateway`'s registration at `at_ms`: its epoch and until when it was
    /// live as of then; `None` before its first.
    pub fn term_at(&self, gateway: &str, at_ms: u64) -> Option<(u64, u64)> {
        let mut term = None;
        for (at, event) in self.by_gateway.get(gateway)?.iter() {
            if *at > at_ms {
                break;
            }
            term = match (*event, term) {
                (LeaseEvent::Registered { epoch, until_ms }, _) => Some((epoch, until_ms)),
                (LeaseEvent::Renewed { until_ms }, Some((epoch, _))) => Some((epoch, until_ms)),
                (LeaseEvent::Resigned, Some((epoch, until))) => Some((epoch, until.min(*at))),
                (_, None) => None,
            };
        }
        term
    }

    /// Whether `gateway`'s lease was live at `at_ms`.
    pub fn live(&self, gateway: &str, at_ms: u64) -> bool {
        self.term_at(gateway, at_ms)
            .is_some_and(|(_, until)| until > at_ms)
    }
}

/// The store links of every gateway of a run.
#[derive(Clone)]
pub struct StoreLinks(Arc<Mutex<Links>>);

/// What a link does to one call.
enum Passage {
    Refused(&'static str),
    Through { answer_lost: bool },
}

impl StoreLinks {
    /// Every link up, losses drawn from `seed`.
    pub fn new(seed: u64) -> StoreLinks {
        StoreLinks(Arc::new(Mutex::new(Links {
            by_gateway: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "store/links")),
            leases: LeaseTimeline::default(),
        })))
    }

    /// The lease changes the store applied so far.
    pub fn leases(&self) -> LeaseTimeline {
        self.lock().leases.clone()
    }

    fn record_lease(&self, gateway: &str, event: LeaseEvent) {
        let at_ms = Self::store_now_ms();
        self.lock().leases.record(gateway, at_ms, event);
    }

    /// The simulation's time in ms, as the store's clock reads it.
    pub fn store_now_ms() -> u64 {
        u64::try_from(crate::cluster::now().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `fault` to the links it names with the store; the rest of it
    /// is turmoil's.
    pub fn apply(&self, fault: &Fault) {
        let gateways = fault
            .a
            .iter()
            .filter(|_| fault.b.iter().any(|y| y == STORE_HOST))
            .chain(
                fault
                    .b
                    .iter()
                    .filter(|_| fault.a.iter().any(|x| x == STORE_HOST)),
            )
            .filter(|g| *g != STORE_HOST);
        let mut links = self.lock();
        for gateway in gateways {
            let link = links.by_gateway.entry(gateway.clone()).or_default();
            match fault.kind {
                FaultKind::Partition | FaultKind::PartitionOneway => link.cut = true,
                FaultKind::Repair | FaultKind::RepairOneway => link.cut = false,
                FaultKind::Hold => link.held = true,
                FaultKind::Release => link.held = false,
                FaultKind::LinkLoss => link.loss = fault.fail_rate.unwrap_or_default(),
                _ => {}
            }
        }
    }

    fn pass(&self, gateway: &str) -> Passage {
        let mut links = self.lock();
        let link = links.by_gateway.get(gateway).copied().unwrap_or_default();
        if link.cut {
            return Passage::Refused("connection refused: the link to the store is cut");
        }
        if link.held {
            return Passage::Refused("no answer in time: the store hangs");
        }
        let answer_lost =
            link.loss > 0.0 && (links.rng.next_u64() as f64 / u64::MAX as f64) < link.loss;
        Passage::Through { answer_lost }
    }
}

/// A gateway's store: a handle on the shared [`MemoryStore`] behind this
/// gateway's link.
#[derive(Debug)]
pub struct LinkedStore {
    store: MemoryStore,
    gateway: String,
    links: StoreLinks,
    /// `shared-claim-hidden`: a claim's tasks are taken but not returned.
    hide_claims: bool,
    /// The lease length of the latest registration, in ms.
    lease_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for StoreLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLinks").finish_non_exhaustive()
    }
}

fn unreachable(what: &str, why: &str) -> StoreError {
    StoreError::Unavailable {
        what: format!("{what} ({why})"),
        waited_ms: HUNG_CALL_WAIT_MS,
    }
}

impl LinkedStore {
    /// `store` (a handle of its own) reached over `gateway`'s link.
    pub fn new(store: MemoryStore, gateway: &str, links: StoreLinks) -> LinkedStore {
        LinkedStore {
            store,
            gateway: gateway.to_string(),
            links,
            hide_claims: false,
            lease_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The simulation's time, in ms: the store's clock.
    fn now_ms(&self) -> u64 {
        StoreLinks::store_now_ms()
    }

    /// The seam of [`crate::Sabotage::SharedClaimHidden`]: every claim takes
    /// its tasks in the store and answers that it found none (a client that
    /// drops the rows it read), so only the gateway's periodic comparison of
    /// what it owns finds them.
    pub fn hiding_claims(mut self, hide: bool) -> LinkedStore {
        self.hide_claims = hide;
        self
    }

    /// `call` over the link: refused, or applied and its answer maybe lost
    /// (then "no answer").
    fn over_link<T>(
        &self,
        what: &str,
        call: impl FnOnce(&MemoryStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.over_link_or(what, || unreachable(what, "the answer was lost"), call)
    }

    /// `call` over the link; a lost answer is the error `lost` makes.
    fn over_link_or<T>(
        &self,
        what: &str,
        lost: impl FnOnce() -> StoreError,
        call: impl FnOnce(&MemoryStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.links.pass(&self.gateway) {
            Passage::Refused(why) => Err(unreachable(what, why)),
            Passage::Through { answer_lost } => {
                let result = call(&self.store);
                if answer_lost {
                    return Err(lost());
                }
                result
            }
        }
    }
}

impl TaskStore for LinkedStore {
    fn engine(&self) -> &'static str {
        self.store.engine()
    }

    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        let lost = || StoreError::CommitUnknown {
            what: batch_what(batch),
            detail: "the answer to COMMIT was lost".into(),
        };
        self.over_link_or("commit", lost, |s| s.commit(batch))
    }

    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        self.over_link("header read", |s| s.header(id))
    }

    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.over_link("runs read", |s| s.runs(id, offset, limit))
    }

    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        self.over_link("task read", |s| s.task_page(id, offset, limit))
    }

    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        self.over_link("task list", |s| s.list(status, after, offset, limit))
    }

    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.over_link("open tasks read", |s| s.open_tasks())
    }

    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.over_link("module read", |s| s.module(hash))
    }

    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        self.over_link("module references read", |s| s.module_refs())
    }

    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        self.over_link("idempotency key read", |s| s.idempotency(key))
    }

    fn finished_count(&self) -> Result<u64, StoreError> {
        self.over_link("finished count read", |s| s.finished_count())
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}

fn batch_what(batch: &Batch) -> String {
    format!("a batch of {} operations", batch.ops.len())
}

impl SharedStore for LinkedStore {
    fn register(&self, gateway: &str, lease_ms: u64) -> Result<Lease, StoreError> {
        self.over_link("registration", |s| {
            let lease = s.register(gateway, lease_ms)?;
            let until_ms = self.now_ms().saturating_add(lease_ms);
            let epoch = lease.epoch;
            self.lease_ms
                .store(lease_ms, std::sync::atomic::Ordering::Relaxed);
            self.links
                .record_lease(&self.gateway, LeaseEvent::Registered { epoch, until_ms });
            Ok(lease)
        })
    }

    fn renew(&self) -> Result<bool, StoreError> {
        self.over_link("lease renewal", |s| {
            let renewed = s.renew()?;
            if renewed {
                let lease_ms = self.lease_ms.load(std::sync::atomic::Ordering::Relaxed);
                let until_ms = self.now_ms().saturating_add(lease_ms);
                self.links
                    .record_lease(&self.gateway, LeaseEvent::Renewed { until_ms });
            }
            Ok(renewed)
        })
    }

    fn resign(&self) -> Result<(), StoreError> {
        self.over_link("lease resignation", |s| {
            s.resign()?;
            self.links.record_lease(&self.gateway, LeaseEvent::Resigned);
            Ok(())
        })
    }

    fn claim(&self, tasks_max: usize) -> Result<Vec<Task>, StoreError> {
        let claimed = self.over_link("claim", |s| s.claim(tasks_max))?;
        if self.hide_claims && !claimed.is_empty() {
            tracing::warn!(target: "ww_sim::sabotage", gateway = %self.gateway, tasks = claimed.len(), "sabotage: claimed tasks hidden from the gateway");
            return Ok(Vec::new());
        }
        Ok(claimed)
    }

    fn owned_open(&self, after: Option<&TaskId>, max: usize) -> Result<Vec<TaskId>, StoreError> {
        self.over_link("owned tasks list", |s| s.owned_open(after, max))
    }

    fn owned_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.over_link("owned task read", |s| s.owned_task(id))
    }

    fn request_cancel(&self, id: &TaskId, now_ms: u64) -> Result<bool, StoreError> {
        self.over_link("cancel request", |s| s.request_cancel(id, now_ms))
    }

    fn cancel_requests(&self, max: usize) -> Result<Vec<TaskId>, StoreError> {
        self.over_link("cancel requests read", |s| s.cancel_requests(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_from_its_registration_to_its_latest_expiry_or_resignation() {
        let mut t = LeaseTimeline::default();
        let g = "gateway";
        t.record(
            g,
            1_000,
            LeaseEvent::Registered {
                epoch: 1,
                until_ms: 11_000,
            },
        );
        t.record(g, 3_500, LeaseEvent::Renewed { until_ms: 13_500 });
        assert!(!t.live(g, 999), "not yet registered");
        assert!(t.live(g, 1_000));
        assert_eq!(
            t.term_at(g, 3_000),
            Some((1, 11_000)),
            "the renewal comes later"
        );
        assert!(t.live(g, 12_000), "renewed");
        assert!(!t.live(g, 13_500), "expired");
        t.record(
            g,
            20_000,
            LeaseEvent::Registered {
                epoch: 2,
                until_ms: 30_000,
            },
        );
        t.record(g, 25_000, LeaseEvent::Resigned);
        assert_eq!(t.term_at(g, 21_000), Some((2, 30_000)));
        assert!(t.live(g, 24_999));
        assert!(!t.live(g, 25_000), "resigned");
        assert!(!t.live("gateway-1", 5_000), "never registered");
    }
}
