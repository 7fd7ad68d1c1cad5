//! A gateway among several on one shared store keeps its lease with the
//! sans-IO [`LeaseKeeper`] (the one timing rule of [`LeaseConfig`]), claims
//! the tasks of gateways whose leases expired, and applies cancels other
//! gateways were asked for its tasks. This module only does the I/O: store
//! calls on the blocking pool (inline in simulation), sleeps until the keeper's next wake-up.
//!
//! The safety rule (the keeper's): a renewal sent at local time `t` that
//! succeeds makes the store's expiry at least `t + lease_ms` (the store sets
//! it after the send), so this gateway may act (acknowledge, start runs)
//! until `t + lease_ms - margin_ms` by its own clock. Past that without a
//! newer successful renewal it fail-stops: the health switch refuses every
//! answer, the process exits within a second (`ww-sched gateway`), and its
//! runs are stopped with its connections; all before the store lets another
//! gateway claim its tasks. Clocks are assumed to run at the same rate (no
//! bound on drift beyond the margin).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commands::Command;
use super::core::StorageMode;
use super::health::Health;
use crate::lease::keeper::{LeaseKeeper, LeaseRequest};
use crate::lease::LeaseConfig;
use crate::sched::{SharedStore, Store, StoreError, TaskId};

/// Owned task ids listed per store call in a comparison (it pages through all).
pub const OWNED_PAGE: usize = 1_024;

/// The gateway's clock as its keeper reads it: milliseconds since the
/// registration was sent, on tokio's monotonic clock.
#[derive(Clone, Copy, Debug)]
struct KeeperClock {
    base: Instant,
}

impl KeeperClock {
    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as u64
    }

    fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }
}

/// A gateway registered on a shared store: its epoch, and the keeper of the
/// lease that registration gave it.
#[derive(Debug)]
pub struct Registration {
    epoch: u64,
    keeper: LeaseKeeper,
    clock: KeeperClock,
}

impl Registration {
    /// Registers `gateway` on `shared` (a new epoch), after checking that
    /// `config` keeps the timing rule. The shipped gateway registers once, at
    /// start: it stops rather than registering again, so none of its
    /// registrations is ever in flight while it acts.
    pub fn register(
        shared: &dyn SharedStore,
        gateway: &str,
        config: LeaseConfig,
    ) -> Result<Registration, String> {
        config.check()?;
        let clock = KeeperClock {
            base: Instant::now(),
        };
        let mut keeper = LeaseKeeper::new(config);
        let sent_ms = clock.now_ms();
        let Some(LeaseRequest::Register { .. }) = keeper.poll_request(sent_ms) else {
            return Err("a new lease keeper did not ask to register".into());
        };
        let lease = shared
            .register(gateway, config.lease_ms)
            .map_err(|e| e.to_string())?;
        if !keeper.on_registered(sent_ms, lease.epoch) {
            return Err(format!("epoch {} was not adopted", lease.epoch));
        }
        Ok(Registration {
            epoch: lease.epoch,
            keeper,
            clock,
        })
    }

    /// The epoch the registration made.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Until when the gateway may act, unless it renews.
    pub fn act_until(&self) -> Instant {
        deadline(&self.keeper, &self.clock)
    }
}

/// The keeper's deadline as an instant (now, if it holds no lease).
fn deadline(keeper: &LeaseKeeper, clock: &KeeperClock) -> Instant {
    keeper
        .deadline_ms()
        .map_or_else(Instant::now, |ms| clock.instant(ms))
}

/// Runs a store call off the async threads (on real hosts), or inline (in
/// simulation, where a thread of its own would make the run depend on the
/// machine's scheduling rather than on its seed).
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    mode: StorageMode,
    call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    if mode == StorageMode::Inline {
        return call(store);
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Unavailable {
            what: format!("store call: {e}"),
            waited_ms: 0,
        }),
    }
}

/// `call`, given up at `until`, the end of the lease window (the call may
/// still finish later, unseen: the store fences what it would write).
async fn within<T>(
    until: Instant,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout_at(until, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable {
            what: "a store call at the end of the lease window".into(),
            waited_ms: 0,
        }),
    }
}

fn shared(store: &Store) -> Result<&dyn SharedStore, StoreError> {
    store.shared().ok_or_else(|| StoreError::Unavailable {
        what: "a shared store".into(),
        waited_ms: 0,
    })
}

pub use super::lease_window::{ActUntil, ClaimRoom};

/// Whether the keeping goes on.
enum Flow {
    Go,
    Stop,
}

/// The lease keeping of one gateway: the keeper, and when the other store
/// calls are due.
struct Keeping {
    store: Arc<Store>,
    mode: StorageMode,
    config: LeaseConfig,
    keeper: LeaseKeeper,
    clock: KeeperClock,
    commands: mpsc::Sender<Command>,
    health: Arc<Health>,
    act_until: ActUntil,
    claim_room: ClaimRoom,
    next_claim: Instant,
    next_owned_check: Instant,
    unreachable_since: Option<Instant>,
}

/// Keeps the lease of a gateway's `registration`, claims orphaned tasks,
/// lists the tasks it owns now and then, and forwards cancel requests to the
/// core through `commands`, until the lease is lost or cannot be renewed in
/// time; then trips `health`. Each store call is given up at the window's
/// end, so a database that hangs is noticed in time, as one that refuses is.
pub async fn keep_lease(
    store: Arc<Store>,
    mode: StorageMode,
    registration: Registration,
    commands: mpsc::Sender<Command>,
    health: Arc<Health>,
    act_until: ActUntil,
    claim_room: ClaimRoom,
) {
    let Registration { keeper, clock, .. } = registration;
    let config = *keeper.config();
    act_until.set(deadline(&keeper, &clock));
    let now = Instant::now();
    let mut keeping = Keeping {
        store,
        mode,
        config,
        keeper,
        clock,
        commands,
        health,
        act_until,
        claim_room,
        next_claim: now + Duration::from_millis(config.poll_ms),
        next_owned_check: now + Duration::from_millis(config.owned_check_ms),
        unreachable_since: None,
    };
    keeping.run().await;
}

impl Keeping {
    async fn run(&mut self) {
        loop {
            let wake = self
                .clock
                .instant(self.keeper.next_wakeup_ms())
                .min(self.next_claim)
                .min(self.next_owned_check)
                .min(Instant::now() + Duration::from_millis(self.config.cancel_poll_ms));
            tokio::time::sleep_until(wake).await;
            let now_ms = self.clock.now_ms();
            if self.keeper.check_deadline(now_ms) {
                let now = Instant::now();
                let since = self
                    .unreachable_since
                    .map_or(0, |s| now.duration_since(s).as_millis());
                let why = if self.unreachable_since.is_some() {
                    format!("the store has been unreachable for {since} ms")
                } else {
                    // No renewal failed: the window closed while this process
                    // did not run (a pause, a stopped VM, a starved thread).
                    "its window closed while no renewal was tried".to_string()
                };
                self.health.trip(format!(
                    "lease not renewed in time ({why}): stopping before another gateway may \
                     take this one's tasks"
                ));
                return;
            }
            let now = Instant::now();
            let flow = if let Some(request) = self.keeper.poll_request(now_ms) {
                self.renew(now_ms, request).await
            } else if now >= self.next_claim {
                self.claim(now).await
            } else if now >= self.next_owned_check {
                self.check_owned(now).await
            } else {
                self.read_cancels().await
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    fn until(&self) -> Instant {
        deadline(&self.keeper, &self.clock)
    }

    /// Sends the keeper's `request`, made at `sent_ms`, and tells it the
    /// answer.
    async fn renew(&mut self, sent_ms: u64, request: LeaseRequest) -> Flow {
        let LeaseRequest::Renew { epoch } = request else {
            // Only after the keeper gave its lease up, which the deadline
            // check above turns into a stop first.
            self.health.trip("lease given up; stopping");
            return Flow::Stop;
        };
        let sent_at = self.clock.instant(sent_ms);
        let renewal = blocking(&self.store, self.mode, |s| shared(s)?.renew());
        match within(self.until(), renewal).await {
            Ok(true) => {
                self.keeper.on_renewed(sent_ms, epoch);
                self.act_until.set(self.until());
                self.unreachable_since = None;
            }
            Ok(false) => {
                self.health
                    .trip("lease lost: another registration replaced it or it expired; stopping");
                return Flow::Stop;
            }
            Err(e) => {
                self.unreachable_since.get_or_insert(sent_at);
                tracing::warn!(error = %e, "lease renewal failed; retrying");
                // Soon: the window closes whether or not the store is back.
                self.keeper.on_renew_failed(self.clock.now_ms());
            }
        }
        Flow::Go
    }

    /// Claims orphaned tasks, as many as the core has room for.
    async fn claim(&mut self, now: Instant) -> Flow {
        self.next_claim = now + Duration::from_millis(self.config.poll_ms);
        let max = self.config.claim_max.min(self.claim_room.get());
        if max == 0 {
            return Flow::Go;
        }
        let claim = blocking(&self.store, self.mode, move |s| shared(s)?.claim(max));
        match within(self.until(), claim).await {
            Ok(tasks) if tasks.is_empty() => {}
            Ok(tasks) => {
                if self.commands.send(Command::Adopt { tasks }).await.is_err() {
                    return Flow::Stop;
                }
            }
            Err(StoreError::LeaseLost { .. }) => {
                self.health.trip("lease lost during a claim; stopping");
                return Flow::Stop;
            }
            Err(e) => {
                // It may have committed all the same, its answer lost.
                tracing::warn!(error = %e, "claim of orphaned tasks failed");
                let recheck = now + Duration::from_millis(self.config.owned_recheck_ms);
                self.next_owned_check = self.next_owned_check.min(recheck);
            }
        }
        Flow::Go
    }

    /// Compares the tasks the store says this gateway owns with those the
    /// core holds.
    async fn check_owned(&mut self, now: Instant) -> Flow {
        self.next_owned_check = now + Duration::from_millis(self.config.owned_check_ms);
        match compare_owned(&self.store, self.mode, self.until(), &self.commands).await {
            Ok(true) => Flow::Go,
            Ok(false) => Flow::Stop,
            Err(StoreError::LeaseLost { .. }) => {
                self.health
                    .trip("lease lost while listing owned tasks; stopping");
                Flow::Stop
            }
            Err(e) => {
                tracing::warn!(error = %e, "owned tasks not listed; retrying");
                self.next_owned_check = now + Duration::from_millis(self.config.owned_recheck_ms);
                Flow::Go
            }
        }
    }

    /// Forwards the cancels other gateways were asked for this one's tasks.
    async fn read_cancels(&mut self) -> Flow {
        let read = blocking(&self.store, self.mode, |s| shared(s)?.cancel_requests(64));
        match within(self.until(), read).await {
            Ok(ids) => {
                for id in ids {
                    if self
                        .commands
                        .send(Command::CancelAsked { id })
                        .await
                        .is_err()
                    {
                        return Flow::Stop;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cancel requests not read"),
        }
        Flow::Go
    }
}

/// Sends the core every unfinished task id the store says this gateway owns,
/// a page at a time (each page's store call given up at `until`);
/// `Ok(false)` once the core is gone.
async fn compare_owned(
    store: &Arc<Store>,
    mode: StorageMode,
    until: Instant,
    commands: &mpsc::Sender<Command>,
) -> Result<bool, StoreError> {
    let mut after: Option<TaskId> = None;
    loop {
        let from = after.clone();
        let ids = within(
            until,
            blocking(store, mode, move |s| {
                shared(s)?.owned_open(from.as_ref(), OWNED_PAGE)
            }),
        )
        .await?;
        let last_page = ids.len() < OWNED_PAGE;
        after = ids.last().cloned();
        if !ids.is_empty() && commands.send(Command::Owned { ids }).await.is_err() {
            return Ok(false);
        }
        if last_page {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{Lease, Task};

    /// A shared store that only registers, always at epoch 7.
    struct Registers;

    impl SharedStore for Registers {
        fn register(&self, gateway: &str, lease_ms: u64) -> Result<Lease, StoreError> {
            Ok(Lease {
                gateway: gateway.to_string(),
                epoch: 7,
                lease_ms,
            })
        }
        fn renew(&self) -> Result<bool, StoreError> {
            Ok(true)
        }
        fn resign(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn claim(&self, _: usize) -> Result<Vec<Task>, StoreError> {
            Ok(Vec::new())
        }
        fn owned_open(&self, _: Option<&TaskId>, _: usize) -> Result<Vec<TaskId>, StoreError> {
            Ok(Vec::new())
        }
        fn owned_task(&self, _: &TaskId) -> Result<Option<Task>, StoreError> {
            Ok(None)
        }
        fn request_cancel(&self, _: &TaskId, _: u64) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn cancel_requests(&self, _: usize) -> Result<Vec<TaskId>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_registration_may_act_until_its_send_plus_lease_minus_margin() {
        let config = LeaseConfig::default();
        let before = Instant::now();
        let registration = Registration::register(&Registers, "gw", config).expect("registered");
        let after = Instant::now();
        assert_eq!(registration.epoch(), 7);
        // Sent between `before` and `after`; the keeper's clock counts whole
        // milliseconds, so its deadline is at most 1 ms early, never late.
        let window = Duration::from_millis(config.lease_ms - config.margin_ms);
        let until = registration.act_until();
        assert!(until + Duration::from_millis(1) >= before + window);
        assert!(until <= after + window);
    }

    #[test]
    fn a_timing_that_breaks_the_rule_is_refused_before_registering() {
        let tight = LeaseConfig {
            margin_ms: 6_000,
            ..LeaseConfig::default()
        };
        let refused = Registration::register(&Registers, "gw", tight).expect_err("refused");
        assert!(refused.contains("no room"), "{refused}");
    }
}
