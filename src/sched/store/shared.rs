//! What a store shared by several gateways adds: leases, task ownership,
//! claims of orphaned tasks, and cancels asked of another gateway's task.
//!
//! The rules (docs/ARCHITECTURE.md, "Several gateways"):
//! - a gateway registers under its id and gets a new epoch and a lease that
//!   expires `lease_ms` after the store's now; it renews it well before then;
//! - every unfinished task is owned by one (gateway, epoch); only that owner
//!   writes it (a write of a task it does not own, or with a lease that is no
//!   longer live, is refused whole) and only that owner runs it;
//! - a task whose owner's lease expired, whose owner registered again, or that
//!   has no owner, is claimed by whichever gateway asks first;
//! - a cancel asked at a gateway that does not own the task is stored as a
//!   request; the owner applies it, and the asking gateway answers once the
//!   task is final in the store.

use super::StoreError;
use crate::sched::id::TaskId;
use crate::sched::types::Task;

/// A gateway's registration on a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The gateway's id (its peer id).
    pub gateway: String,
    /// Bumped at every registration: an older epoch's tasks are claimable.
    pub epoch: u64,
    /// How long the lease lasts past each renewal, on the store's clock.
    pub lease_ms: u64,
}

/// A task store that several gateways share (PostgreSQL).
pub trait SharedStore: Send + Sync {
    /// Registers `gateway` with a new epoch and a lease of `lease_ms`; from now
    /// on this store writes as that gateway's epoch.
    fn register(&self, gateway: &str, lease_ms: u64) -> Result<Lease, StoreError>;

    /// Extends the lease by `lease_ms` from the store's now: `false` if it had
    /// expired or another registration replaced it (it is never extended then).
    fn renew(&self) -> Result<bool, StoreError>;

    /// Ends the lease now, so that others claim this gateway's tasks at once.
    fn resign(&self) -> Result<(), StoreError>;

    /// Takes up to `tasks_max` unfinished tasks that have no live owner and
    /// returns them whole; refused with `LeaseLost` if this gateway's own
    /// lease is not live.
    fn claim(&self, tasks_max: usize) -> Result<Vec<Task>, StoreError>;

    /// Up to `max` unfinished tasks this gateway's epoch owns, in id order
    /// after `after` (a page): a claim whose answer was lost leaves some the
    /// gateway does not hold.
    fn owned_open(&self, after: Option<&TaskId>, max: usize) -> Result<Vec<TaskId>, StoreError>;

    /// Task `id` whole, if this gateway's epoch owns it and it is unfinished
    /// (read in one snapshot).
    fn owned_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// Asks the owner of unfinished task `id` to cancel it: `false` if the
    /// task is final or unknown (nothing asked).
    fn request_cancel(&self, id: &TaskId, now_ms: u64) -> Result<bool, StoreError>;

    /// Up to `max` cancels asked of this gateway's tasks.
    fn cancel_requests(&self, max: usize) -> Result<Vec<TaskId>, StoreError>;
}
