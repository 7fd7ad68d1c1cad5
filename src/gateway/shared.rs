//! A gateway among several on one shared store: it keeps its lease, claims
//! the tasks of gateways whose leases expired, and applies cancels other
//! gateways were asked for its tasks.
//!
//! The safety rule: a renewal sent at local time `t` that succeeds makes the
//! store's expiry at least `t + lease_ms` (the store sets it after the send),
//! so this gateway may act (acknowledge, start runs) until `t + lease_ms -
//! margin_ms` by its own clock. Past that without a newer successful renewal
//! it fail-stops: the health switch refuses every answer, the process exits
//! within a second (`ww-sched gateway`), and its runs are stopped with its
//! connections; all before the store lets another gateway claim its tasks.
//! Clocks are assumed to run at the same rate (no bound on drift beyond the
//! margin).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commands::Command;
use super::health::Health;
use crate::sched::{Store, StoreError, TaskId};

/// Lease timing of a gateway on a shared store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a renewal keeps the lease, on the store's clock.
    pub lease_ms: u64,
    /// How often it is renewed.
    pub renew_ms: u64,
    /// How long before the store's earliest expiry the gateway stops acting.
    pub margin_ms: u64,
    /// How often orphaned tasks are looked for.
    pub claim_ms: u64,
    /// How often cancels asked of this gateway's tasks are looked for.
    pub cancel_poll_ms: u64,
    /// Most tasks taken over in one claim.
    pub claim_max: usize,
    /// How often the tasks the store says this gateway owns are compared with
    /// those it holds (a claim whose answer was lost leaves some unheld).
    pub owned_check_ms: u64,
    /// How soon after a failed claim they are compared: past the store's job
    /// deadline (6 s), so a claim that still committed has committed.
    pub owned_recheck_ms: u64,
}

/// Owned task ids listed per store call in a comparison (it pages through all).
pub const OWNED_PAGE: usize = 1_024;

impl Default for LeaseTiming {
    /// A 10 s lease renewed every 2.5 s; acting stops 3 s before the earliest
    /// expiry; claims every second, cancel requests every 250 ms; owned
    /// tasks compared every minute, and 7 s after a failed claim.
    fn default() -> Self {
        LeaseTiming {
            lease_ms: 10_000,
            renew_ms: 2_500,
            margin_ms: 3_000,
            claim_ms: 1_000,
            cancel_poll_ms: 250,
            claim_max: 256,
            owned_check_ms: 60_000,
            owned_recheck_ms: 7_000,
        }
    }
}

impl LeaseTiming {
    /// Whether the timing keeps the rule: renewals well within the lease, and
    /// a margin that leaves time to renew and to exit.
    pub fn check(&self) -> Result<(), String> {
        if [
            self.renew_ms,
            self.cancel_poll_ms,
            self.claim_ms,
            self.owned_check_ms,
            self.owned_recheck_ms,
        ]
        .contains(&0)
        {
            return Err("renew, claim, cancel and owned-check intervals must be positive".into());
        }
        if self.margin_ms + 2 * self.renew_ms > self.lease_ms {
            return Err(format!(
                "lease of {} ms leaves no room for two renewals every {} ms and a margin of {} ms",
                self.lease_ms, self.renew_ms, self.margin_ms
            ));
        }
        Ok(())
    }

    /// The longest a run of a crashed gateway waits before another gateway
    /// may claim it: the lease, plus one claim interval.
    pub fn takeover_bound_ms(&self) -> u64 {
        self.lease_ms + self.claim_ms
    }
}

/// Until when this gateway may act, from its successful renewals (sans-IO).
#[derive(Clone, Copy, Debug)]
pub struct ActWindow {
    lease_ms: u64,
    margin_ms: u64,
    until: Instant,
}

impl ActWindow {
    /// The window of a registration sent at `sent_at`.
    pub fn new(timing: &LeaseTiming, sent_at: Instant) -> Self {
        let mut window = ActWindow {
            lease_ms: timing.lease_ms,
            margin_ms: timing.margin_ms,
            until: sent_at,
        };
        window.renewed(sent_at);
        window
    }

    /// A renewal sent at `sent_at` succeeded. An older one answering late
    /// never shortens the window.
    pub fn renewed(&mut self, sent_at: Instant) {
        let until = sent_at + Duration::from_millis(self.lease_ms.saturating_sub(self.margin_ms));
        self.until = self.until.max(until);
    }

    /// Whether the gateway may still act at `now`.
    pub fn may_act(&self, now: Instant) -> bool {
        now < self.until
    }

    /// When acting must stop, unless renewed.
    pub fn until(&self) -> Instant {
        self.until
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Unavailable {
            what: format!("store call: {e}"),
            waited_ms: 0,
        }),
    }
}

/// `call`, given up when the window ends (the call may still finish later,
/// unseen: the store fences what it would write).
async fn within<T>(
    window: &ActWindow,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout_at(window.until(), call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable {
            what: "a store call at the end of the lease window".into(),
            waited_ms: 0,
        }),
    }
}

fn shared(store: &Store) -> Result<&dyn crate::sched::SharedStore, StoreError> {
    store.shared().ok_or_else(|| StoreError::Unavailable {
        what: "a shared store".into(),
        waited_ms: 0,
    })
}

/// Until when the gateway may start runs, as the lease keeper last learned;
/// the core checks it right before it dispatches, so even a keeper held up
/// (its thread busy) cannot let a run start past the window.
pub type ActUntil = std::rc::Rc<std::cell::Cell<Instant>>;

/// How many more tasks the gateway may take over (its `open_tasks_max` less
/// the tasks it holds), as the core last counted: claims never exceed it.
pub type ClaimRoom = std::rc::Rc<std::cell::Cell<usize>>;

/// Keeps the lease of a gateway registered at `registered_at`, claims orphaned
/// tasks, lists the tasks it owns now and then, and forwards cancel requests
/// to the core through `commands`, until
/// the lease is lost or cannot be renewed in time; then trips `health`. Each
/// store call is given up at the window's end, so a database that hangs is
/// noticed in time, as one that refuses is.
pub async fn keep_lease(
    store: Arc<Store>,
    timing: LeaseTiming,
    registered_at: Instant,
    commands: mpsc::Sender<Command>,
    health: Arc<Health>,
    act_until: ActUntil,
    claim_room: ClaimRoom,
) {
    let mut window = ActWindow::new(&timing, registered_at);
    act_until.set(window.until());
    let mut next_renew = registered_at + Duration::from_millis(timing.renew_ms);
    let mut next_claim = Instant::now() + Duration::from_millis(timing.claim_ms);
    let mut next_owned_check = Instant::now() + Duration::from_millis(timing.owned_check_ms);
    let recheck = Duration::from_millis(timing.owned_recheck_ms);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let wake = next_renew
            .min(next_claim)
            .min(next_owned_check)
            .min(window.until())
            .min(Instant::now() + Duration::from_millis(timing.cancel_poll_ms));
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if !window.may_act(now) {
            let since = unreachable_since.map_or(0, |s| now.duration_since(s).as_millis());
            health.trip(format!(
                "lease not renewed in time (the store has been unreachable for {since} ms): \
                 stopping before another gateway may take this one's tasks"
            ));
            return;
        }
        if now >= next_renew {
            let sent_at = Instant::now();
            let retry_ms = match within(&window, blocking(&store, |s| shared(s)?.renew())).await {
                Ok(true) => {
                    window.renewed(sent_at);
                    act_until.set(window.until());
                    unreachable_since = None;
                    timing.renew_ms
                }
                Ok(false) => {
                    health.trip(
                        "lease lost: another registration replaced it or it expired; stopping",
                    );
                    return;
                }
                Err(e) => {
                    unreachable_since.get_or_insert(sent_at);
                    tracing::warn!(error = %e, "lease renewal failed; retrying");
                    // Soon: the window closes whether or not the store is back.
                    timing.cancel_poll_ms
                }
            };
            next_renew = Instant::now() + Duration::from_millis(retry_ms);
            continue;
        }
        if now >= next_claim {
            next_claim = now + Duration::from_millis(timing.claim_ms);
            let max = timing.claim_max.min(claim_room.get());
            if max == 0 {
                continue;
            }
            match within(&window, blocking(&store, move |s| shared(s)?.claim(max))).await {
                Ok(tasks) if tasks.is_empty() => {}
                Ok(tasks) => {
                    if commands.send(Command::Adopt { tasks }).await.is_err() {
                        return;
                    }
                }
                Err(StoreError::LeaseLost { .. }) => {
                    health.trip("lease lost during a claim; stopping");
                    return;
                }
                Err(e) => {
                    // It may have committed all the same, its answer lost.
                    tracing::warn!(error = %e, "claim of orphaned tasks failed");
                    next_owned_check = next_owned_check.min(now + recheck);
                }
            }
            continue;
        }
        if now >= next_owned_check {
            next_owned_check = now + Duration::from_millis(timing.owned_check_ms);
            match compare_owned(&store, &window, &commands).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(StoreError::LeaseLost { .. }) => {
                    health.trip("lease lost while listing owned tasks; stopping");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "owned tasks not listed; retrying");
                    next_owned_check = now + recheck;
                }
            }
            continue;
        }
        match within(
            &window,
            blocking(&store, |s| shared(s)?.cancel_requests(64)),
        )
        .await
        {
            Ok(ids) => {
                for id in ids {
                    if commands.send(Command::CancelAsked { id }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cancel requests not read"),
        }
    }
}

/// Sends the core every unfinished task id the store says this gateway owns,
/// a page at a time (each page's store call given up at the window's end);
/// `Ok(false)` once the core is gone.
async fn compare_owned(
    store: &Arc<Store>,
    window: &ActWindow,
    commands: &mpsc::Sender<Command>,
) -> Result<bool, StoreError> {
    let mut after: Option<TaskId> = None;
    loop {
        let from = after.clone();
        let ids = within(
            window,
            blocking(store, move |s| {
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_default_timing_keeps_the_rule_and_a_tight_one_is_refused() {
        let timing = LeaseTiming::default();
        assert_eq!(timing.check(), Ok(()));
        assert_eq!(timing.takeover_bound_ms(), 11_000);
        let tight = LeaseTiming {
            margin_ms: 6_000,
            ..timing
        };
        assert!(tight.check().unwrap_err().contains("no room"));
        let zero = LeaseTiming {
            renew_ms: 0,
            ..timing
        };
        assert!(zero.check().is_err());
    }

    #[test]
    fn acting_stops_a_margin_before_the_earliest_expiry_and_late_answers_never_shorten_it() {
        let timing = LeaseTiming::default();
        let t0 = Instant::now();
        let mut window = ActWindow::new(&timing, t0);
        // The store's expiry is at least t0 + 10 s; acting stops at t0 + 7 s.
        assert!(window.may_act(t0 + ms(6_999)));
        assert!(!window.may_act(t0 + ms(7_000)));
        // A renewal sent at 2.5 s moves the end to 9.5 s.
        window.renewed(t0 + ms(2_500));
        assert!(window.may_act(t0 + ms(9_499)));
        assert!(!window.may_act(t0 + ms(9_500)));
        // An older renewal answering late changes nothing.
        window.renewed(t0 + ms(1_000));
        assert_eq!(window.until(), t0 + ms(9_500));
        // Whatever the order of answers, the end is the latest send + 7 s,
        // never later: the store set each expiry after its send.
        for sent in [4_000, 3_000, 6_000, 5_000] {
            window.renewed(t0 + ms(sent));
            assert!(window.until() <= t0 + ms(6_000 + 7_000));
        }
        assert_eq!(window.until(), t0 + ms(13_000));
    }
}
