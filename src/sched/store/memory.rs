//! A shared store held in memory, for simulations and tests: one database
//! that several gateway handles share, with PostgreSQL's sharing rules
//! (leases on the store's clock, ownership fenced by gateway and epoch on
//! every write, claims of orphaned tasks, cancel requests) and no server.
//!
//! The tasks, runs, modules and keys live in a redb database on an in-memory
//! backend, so the layout's rules are the embedded engine's, which
//! `tests/store_layout.rs` holds to the same rules as PostgreSQL's. What
//! sharing adds (who owns what, leases, cancel requests) is kept beside it,
//! under one lock that every write and every claim takes: each operation is
//! applied atomically, in the order the lock is taken, as the server's
//! transactions are. Claims take orphans in id order and never wait for a
//! writer (the lock is the whole database, so there is no row to skip).
//!
//! Not for production: nothing survives the process. The simulation
//! (`ww-sim`) puts link faults in front of it (a cut link, a lost reply, a
//! store that hangs); here every call reaches the store and is answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    whole_task, Batch, BatchReport, Lease, ModuleRefs, Op, RedbStore, SharedStore, StoreError,
    TakenCause, TakenTask, TaskStore,
};
use crate::sched::id::TaskId;
use crate::sched::types::{Run, Task, TaskHeader, TaskStatus};

/// The store's clock: milliseconds on one timeline every handle shares
/// (leases are judged by it, never by a gateway's clock).
pub type StoreClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How long an ended lease that owns no unfinished task is remembered, in ms
/// (as PostgreSQL's prune: the table holds the gateways of the last day).
pub const GATEWAY_FORGET_MS: u64 = 24 * 3_600_000;

/// One registration: the epoch and when its lease ends, on the store's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Registration {
    epoch: u64,
    expires_ms: u64,
}

/// An owner as stored: a gateway and the epoch it wrote under.
type Owner = Option<(String, u64)>;

/// What sharing adds to the tables, guarded by the one lock.
#[derive(Debug, Default)]
struct Sharing {
    gateways: BTreeMap<String, Registration>,
    /// The owner of every stored task (final ones too, as PostgreSQL keeps it).
    owners: BTreeMap<TaskId, Owner>,
    /// Cancels asked of unfinished tasks, with when they were asked.
    cancels: BTreeMap<TaskId, u64>,
}

impl Sharing {
    fn live(&self, lease: &Lease, now_ms: u64) -> bool {
        self.gateways
            .get(&lease.gateway)
            .is_some_and(|r| r.epoch == lease.epoch && r.expires_ms > now_ms)
    }

    /// Whether `owner` holds no live lease: its task may be claimed.
    fn orphaned(&self, owner: &Owner, now_ms: u64) -> bool {
        match owner {
            None => true,
            Some((gateway, epoch)) => self
                .gateways
                .get(gateway)
                .is_none_or(|r| r.epoch != *epoch || r.expires_ms <= now_ms),
        }
    }
}

/// The database every handle shares.
struct Database {
    tables: RedbStore,
    sharing: Mutex<Sharing>,
    clock: StoreClock,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

/// One gateway's handle on a shared in-memory store (what a connection pool
/// is to PostgreSQL): [`MemoryStore::handle`] makes another on the same data.
pub struct MemoryStore {
    db: Arc<Database>,
    lease: Mutex<Option<Lease>>,
    /// The clock this handle judges leases by: the store's, unless a test
    /// gave it its own (see [`MemoryStore::handle_on_clock`]).
    clock: Option<StoreClock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("lease", &self.lease())
            .field("own_clock", &self.clock.is_some())
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, going on with its data if a holder panicked (every change
/// under these locks is made whole before anything can panic).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// A new, empty shared database timed by `clock`, and a first handle on it.
    pub fn new(clock: StoreClock) -> Result<MemoryStore, StoreError> {
        let backend = redb::backends::InMemoryBackend::new();
        let db = Database {
            tables: RedbStore::open_on(backend, "in-memory shared store")?,
            sharing: Mutex::new(Sharing::default()),
            clock,
        };
        Ok(MemoryStore {
            db: Arc::new(db),
            lease: Mutex::new(None),
            clock: None,
        })
    }

    /// Another handle on the same database, registered as nobody (a gateway
    /// starting, or a process of its own).
    pub fn handle(&self) -> MemoryStore {
        MemoryStore {
            db: self.db.clone(),
            lease: Mutex::new(None),
            clock: None,
        }
    }

    /// Another handle whose operations judge leases by `clock` instead of
    /// the store's: what a store that trusted its clients' clocks would do.
    /// PostgreSQL never does (its leases are on `clock_timestamp()`); the
    /// simulation makes that bug with it, to show its checks catch a
    /// gateway claiming tasks whose owner's lease is still live.
    pub fn handle_on_clock(&self, clock: StoreClock) -> MemoryStore {
        MemoryStore {
            db: self.db.clone(),
            lease: Mutex::new(None),
            clock: Some(clock),
        }
    }

    fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock(),
            None => (self.db.clock)(),
        }
    }

    fn lease(&self) -> Option<Lease> {
        locked(&self.lease).clone()
    }

    fn registered(&self, what: &str) -> Result<Lease, StoreError> {
        self.lease().ok_or_else(|| StoreError::LeaseLost {
            what: what.to_string(),
            gateway: "(not registered)".into(),
            epoch: 0,
        })
    }

    fn lease_lost(what: String, lease: &Lease) -> StoreError {
        StoreError::LeaseLost {
            what,
            gateway: lease.gateway.clone(),
            epoch: lease.epoch,
        }
    }

    /// Checks `batch` against ownership as PostgreSQL's writer does, and
    /// returns the batch to write (new tasks another gateway took are
    /// dropped), what was dropped, and the tasks it creates.
    fn fence(
        &self,
        sharing: &Sharing,
        batch: &Batch,
        me: &Owner,
    ) -> Result<(Batch, Vec<TakenTask>, Vec<TaskId>), StoreError> {
        let mut kept = Vec::with_capacity(batch.ops.len());
        let mut taken = Vec::new();
        let mut created = Vec::new();
        let mut modules: Vec<[u8; 32]> = Vec::new();
        for op in &batch.ops {
            match op {
                Op::PutTask { header, .. } => {
                    match self.check_put(sharing, header, me, &modules, &created)? {
                        Put::Taken(cause) => {
                            taken.push(TakenTask {
                                id: header.spec.id.clone(),
                                cause,
                            });
                            continue;
                        }
                        Put::Create => created.push(header.spec.id.clone()),
                        Put::Update => {}
                    }
                }
                Op::PutModule { hash, .. } => modules.push(*hash),
                _ => {}
            }
            kept.push(op.clone());
        }
        Ok((Batch { ops: kept }, taken, created))
    }

    /// What writing `header` does: creates the task, updates it, or is
    /// dropped because another writer took its id, key or module; refused
    /// if it is another owner's unfinished task. The tables' own checks
    /// (a final task rewritten, a spec changed) are left to the tables.
    fn check_put(
        &self,
        sharing: &Sharing,
        header: &TaskHeader,
        me: &Owner,
        modules: &[[u8; 32]],
        created: &[TaskId],
    ) -> Result<Put, StoreError> {
        let id = &header.spec.id;
        let shared = me.is_some();
        if created.contains(id) {
            return Ok(Put::Update);
        }
        if let Some(old) = self.db.tables.header(id)? {
            let owner = sharing.owners.get(id).cloned().flatten();
            let same = old.spec == header.spec && old.submitted_ms == header.submitted_ms;
            if !same && shared && owner != *me {
                return Ok(Put::Taken(self.conflict(header)?));
            }
            if !old.status.is_final() && owner != *me {
                return Err(StoreError::NotOwner {
                    id: id.clone(),
                    owner: owner.map_or("nobody".into(), |(g, e)| format!("{g}/{e}")),
                });
            }
            return Ok(Put::Update);
        }
        if shared {
            if let Some(other) = self.task_of_key(header)? {
                return Ok(Put::Taken(TakenCause::Key(other)));
            }
            let hash = header.spec.module_hash;
            if !modules.contains(&hash) && self.db.tables.module(&hash)?.is_none() {
                return Ok(Put::Taken(TakenCause::ModuleGone(hash)));
            }
        }
        Ok(Put::Create)
    }

    /// Why a new task's id is taken: its key names a stored task, or another
    /// task holds its id.
    fn conflict(&self, header: &TaskHeader) -> Result<TakenCause, StoreError> {
        Ok(self
            .task_of_key(header)?
            .map_or(TakenCause::Id, TakenCause::Key))
    }

    /// The stored task `header`'s idempotency key names, if any.
    fn task_of_key(&self, header: &TaskHeader) -> Result<Option<TaskId>, StoreError> {
        match header.spec.idempotency_key.as_deref() {
            Some(key) => self.db.tables.idempotency(key),
            None => Ok(None),
        }
    }

    /// Brings ownership and cancel requests up to a committed batch.
    fn after_commit(
        sharing: &mut Sharing,
        batch: &Batch,
        report: &BatchReport,
        created: Vec<TaskId>,
        me: &Owner,
    ) {
        for id in created {
            sharing.owners.insert(id, me.clone());
        }
        for op in &batch.ops {
            if let Op::PutTask { header, .. } = op {
                if header.status.is_final() {
                    sharing.cancels.remove(&header.spec.id);
                }
            }
        }
        for deleted in &report.deleted {
            sharing.owners.remove(&deleted.id);
            sharing.cancels.remove(&deleted.id);
        }
    }

    /// Whether task `id` is stored and unfinished.
    fn open(&self, id: &TaskId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .tables
            .header(id)?
            .is_some_and(|h| !h.status.is_final()))
    }
}

/// What a write of one task does.
#[derive(Debug)]
enum Put {
    Create,
    Update,
    Taken(TakenCause),
}

impl TaskStore for MemoryStore {
    fn engine(&self) -> &'static str {
        "memory"
    }

    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        let mut sharing = locked(&self.db.sharing);
        let lease = self.lease();
        if let Some(lease) = &lease {
            if !sharing.live(lease, self.now_ms()) {
                return Err(Self::lease_lost(batch.describe(), lease));
            }
        }
        let me: Owner = lease.map(|l| (l.gateway, l.epoch));
        let (kept, taken, created) = self.fence(&sharing, batch, &me)?;
        let mut report = self.db.tables.commit(&kept)?;
        Self::after_commit(&mut sharing, &kept, &report, created, &me);
        report.taken = taken;
        Ok(report)
    }

    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        self.db.tables.header(id)
    }

    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.db.tables.runs(id, offset, limit)
    }

    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        self.db.tables.task_page(id, offset, limit)
    }

    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        self.db.tables.list(status, after, offset, limit)
    }

    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.db.tables.open_tasks()
    }

    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.tables.module(hash)
    }

    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        self.db.tables.module_refs()
    }

    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        self.db.tables.idempotency(key)
    }

    fn finished_count(&self) -> Result<u64, StoreError> {
        self.db.tables.finished_count()
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}

impl SharedStore for MemoryStore {
    fn register(&self, gateway: &str, lease_ms: u64) -> Result<Lease, StoreError> {
        let mut sharing = locked(&self.db.sharing);
        let now_ms = self.now_ms();
        let epoch = sharing.gateways.get(gateway).map_or(1, |r| r.epoch + 1);
        let registration = Registration {
            epoch,
            expires_ms: now_ms.saturating_add(lease_ms),
        };
        sharing.gateways.insert(gateway.to_string(), registration);
        let Sharing {
            gateways, owners, ..
        } = &mut *sharing;
        gateways.retain(|name, r| {
            r.expires_ms.saturating_add(GATEWAY_FORGET_MS) >= now_ms
                || owners
                    .values()
                    .any(|o| o.as_ref().is_some_and(|(g, _)| g == name))
        });
        let lease = Lease {
            gateway: gateway.to_string(),
            epoch,
            lease_ms,
        };
        *locked(&self.lease) = Some(lease.clone());
        Ok(lease)
    }

    fn renew(&self) -> Result<bool, StoreError> {
        let lease = self.registered("lease renewal")?;
        let mut sharing = locked(&self.db.sharing);
        let now_ms = self.now_ms();
        if !sharing.live(&lease, now_ms) {
            return Ok(false);
        }
        let registration = sharing
            .gateways
            .get_mut(&lease.gateway)
            .expect("a live lease is registered");
        registration.expires_ms = now_ms.saturating_add(lease.lease_ms);
        Ok(true)
    }

    fn resign(&self) -> Result<(), StoreError> {
        let lease = self.registered("lease resignation")?;
        let mut sharing = locked(&self.db.sharing);
        let now_ms = self.now_ms();
        if let Some(r) = sharing.gateways.get_mut(&lease.gateway) {
            if r.epoch == lease.epoch {
                r.expires_ms = r.expires_ms.min(now_ms);
            }
        }
        Ok(())
    }

    fn claim(&self, tasks_max: usize) -> Result<Vec<Task>, StoreError> {
        let what = "claim of orphaned tasks";
        let lease = self.registered(what)?;
        let mut sharing = locked(&self.db.sharing);
        let now_ms = self.now_ms();
        if !sharing.live(&lease, now_ms) {
            return Err(Self::lease_lost(what.into(), &lease));
        }
        let mut claimed = Vec::new();
        for task in self.db.tables.open_tasks()? {
            if claimed.len() >= tasks_max {
                break;
            }
            let owner = sharing.owners.get(&task.spec.id).cloned().flatten();
            if sharing.orphaned(&owner, now_ms) {
                claimed.push(task);
            }
        }
        for task in &claimed {
            let me = Some((lease.gateway.clone(), lease.epoch));
            sharing.owners.insert(task.spec.id.clone(), me);
        }
        Ok(claimed)
    }

    fn owned_open(&self, after: Option<&TaskId>, max: usize) -> Result<Vec<TaskId>, StoreError> {
        let lease = self.registered("tasks owned")?;
        let me = Some((lease.gateway, lease.epoch));
        let mine: Vec<TaskId> = {
            let sharing = locked(&self.db.sharing);
            sharing
                .owners
                .iter()
                .filter(|(id, owner)| **owner == me && after.is_none_or(|a| *id > a))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut open = Vec::new();
        for id in mine {
            if open.len() >= max {
                break;
            }
            if self.open(&id)? {
                open.push(id);
            }
        }
        Ok(open)
    }

    fn owned_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let lease = self.registered("task owned")?;
        // Under the lock: ownership and the task from one moment.
        let sharing = locked(&self.db.sharing);
        let me = Some((lease.gateway, lease.epoch));
        if sharing.owners.get(id) != Some(&me) || !self.open(id)? {
            return Ok(None);
        }
        whole_task(&self.db.tables, id).map(Some)
    }

    fn request_cancel(&self, id: &TaskId, now_ms: u64) -> Result<bool, StoreError> {
        let mut sharing = locked(&self.db.sharing);
        if !self.open(id)? {
            return Ok(false);
        }
        sharing.cancels.entry(id.clone()).or_insert(now_ms);
        Ok(true)
    }

    fn cancel_requests(&self, max: usize) -> Result<Vec<TaskId>, StoreError> {
        let lease = self.registered("cancel requests")?;
        let me = Some((lease.gateway, lease.epoch));
        let sharing = locked(&self.db.sharing);
        Ok(sharing
            .cancels
            .keys()
            .filter(|id| sharing.owners.get(*id) == Some(&me))
            .take(max)
            .cloned()
            .collect())
    }
}
