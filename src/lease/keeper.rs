//! A gateway's lease, sans-IO: when to register and renew, and until when the
//! gateway may act, all on the gateway's own clock.
//!
//! The rule that makes it safe: a renewal succeeds at the store at some moment
//! after the gateway sent it, and sets the expiry to that moment plus
//! `lease_ms`; so `sent_ms + lease_ms` on the gateway's clock is never later
//! than the expiry (clocks advancing at the same rate). The gateway acts only
//! until `sent_ms + lease_ms - margin_ms`, and the margin is left for the
//! action itself to land (and for drift).

use super::{Epoch, LeaseConfig};

/// What the keeper wants sent to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Register: a new epoch, if the row's is still `seen`.
    Register {
        /// The latest epoch known of the gateway's row.
        seen: Epoch,
    },
    /// Renew the lease of this epoch.
    Renew {
        /// The epoch renewed.
        epoch: Epoch,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No lease; a registration may be in flight since `register_sent_ms`.
    Unregistered { register_sent_ms: Option<u64> },
    /// A lease under `epoch`, usable until `deadline_ms` (local clock).
    Held {
        epoch: Epoch,
        deadline_ms: u64,
        next_renew_ms: u64,
    },
}

/// A gateway's lease state machine.
#[derive(Clone, Debug)]
pub struct LeaseKeeper {
    config: LeaseConfig,
    state: State,
    /// The latest epoch known of this gateway's row (0: none yet).
    seen: Epoch,
    /// The highest `seen` any registration sent so far named: such a
    /// registration may still commit and move the row past `seen`, so an
    /// epoch up to it is never adopted.
    seen_sent: Option<Epoch>,
}

impl LeaseKeeper {
    /// A keeper with no lease yet: its first request is a registration.
    pub fn new(config: LeaseConfig) -> LeaseKeeper {
        debug_assert!(
            config.margin_ms < config.lease_ms,
            "margin must fit in the lease"
        );
        LeaseKeeper {
            config,
            state: State::Unregistered {
                register_sent_ms: None,
            },
            seen: 0,
            seen_sent: None,
        }
    }

    /// The timing it keeps.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The current epoch, if registered.
    pub fn epoch(&self) -> Option<Epoch> {
        match self.state {
            State::Held { epoch, .. } => Some(epoch),
            State::Unregistered { .. } => None,
        }
    }

    /// Until when (local clock) the gateway may act, if registered.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self.state {
            State::Held { deadline_ms, .. } => Some(deadline_ms),
            State::Unregistered { .. } => None,
        }
    }

    /// The epoch to act under at `now_ms`, if the gateway may act at all.
    pub fn may_act(&self, now_ms: u64) -> Option<Epoch> {
        match self.state {
            State::Held {
                epoch, deadline_ms, ..
            } if now_ms < deadline_ms => Some(epoch),
            _ => None,
        }
    }

    /// The request due at `now_ms`, if any; the caller sends it now and hands
    /// `now_ms` back with its reply.
    pub fn poll_request(&mut self, now_ms: u64) -> Option<LeaseRequest> {
        match &mut self.state {
            State::Unregistered { register_sent_ms } => {
                let due = register_sent_ms
                    .is_none_or(|sent| now_ms >= sent + self.config.request_timeout_ms);
                if !due {
                    return None;
                }
                *register_sent_ms = Some(now_ms);
                self.seen_sent = self.seen_sent.max(Some(self.seen));
                Some(LeaseRequest::Register { seen: self.seen })
            }
            State::Held {
                epoch,
                next_renew_ms,
                ..
            } => {
                if now_ms < *next_renew_ms {
                    return None;
                }
                *next_renew_ms = now_ms + self.config.renew_every_ms;
                Some(LeaseRequest::Renew { epoch: *epoch })
            }
        }
    }

    /// When the keeper next needs [`LeaseKeeper::poll_request`] or
    /// [`LeaseKeeper::check_deadline`] called (local clock).
    pub fn next_wakeup_ms(&self) -> u64 {
        match self.state {
            State::Unregistered {
                register_sent_ms: None,
            } => 0,
            State::Unregistered {
                register_sent_ms: Some(sent),
            } => sent + self.config.request_timeout_ms,
            State::Held {
                deadline_ms,
                next_renew_ms,
                ..
            } => next_renew_ms.min(deadline_ms),
        }
    }

    /// A registration sent at `sent_ms` was answered with `epoch`. Returns
    /// whether the keeper adopted it (then the caller forgets every task of
    /// its previous epoch).
    pub fn on_registered(&mut self, sent_ms: u64, epoch: Epoch) -> bool {
        self.seen = self.seen.max(epoch);
        if self.epoch().is_some_and(|current| current >= epoch) {
            return false;
        }
        // A registration naming `epoch` (or later) is in flight, sent after
        // an `EpochMoved` arrived ahead of this reply: it may still commit
        // and fence `epoch`, so wait for its own answer instead.
        if self.seen_sent.is_some_and(|sent| sent >= epoch) {
            return false;
        }
        self.state = State::Held {
            epoch,
            deadline_ms: self.deadline_after(sent_ms),
            next_renew_ms: sent_ms + self.config.renew_every_ms,
        };
        true
    }

    /// A registration found the row at epoch `current`, not the one it saw:
    /// the next registration names `current`. It goes at once unless one of
    /// this keeper's own registrations may have made `current` (its answer,
    /// still coming, is then awaited; the retry covers its loss).
    pub fn on_epoch_moved(&mut self, current: Epoch) {
        self.seen = self.seen.max(current);
        let maybe_ours = self.seen_sent.is_some_and(|sent| current <= sent + 1);
        if let State::Unregistered { register_sent_ms } = &mut self.state {
            if !maybe_ours {
                *register_sent_ms = None;
            }
        }
    }

    /// A renewal of `epoch` sent at `sent_ms` succeeded.
    pub fn on_renewed(&mut self, sent_ms: u64, epoch: Epoch) {
        let extended = self.deadline_after(sent_ms);
        if let State::Held {
            epoch: current,
            deadline_ms,
            ..
        } = &mut self.state
        {
            // Replies may come out of order: an older success never shortens.
            if *current == epoch && extended > *deadline_ms {
                *deadline_ms = extended;
            }
        }
    }

    /// A renewal failed without an answer from the store (an error, a
    /// timeout): the next one goes `renew_retry_ms` from `now_ms`, not a
    /// whole renewal period later, while the deadline still allows.
    pub fn on_renew_failed(&mut self, now_ms: u64) {
        let retry_ms = now_ms + self.config.renew_retry_ms;
        if let State::Held { next_renew_ms, .. } = &mut self.state {
            *next_renew_ms = (*next_renew_ms).min(retry_ms);
        }
    }

    /// The store said the lease of `epoch` is lost. Returns whether that was
    /// the current lease (then the caller drops every task and stops their
    /// runs; the keeper registers again).
    pub fn on_lost(&mut self, epoch: Epoch) -> bool {
        self.seen = self.seen.max(epoch);
        if self.epoch() != Some(epoch) {
            return false;
        }
        self.state = State::Unregistered {
            register_sent_ms: None,
        };
        true
    }

    /// Gives the lease up on the keeper's own clock once its deadline passed
    /// with no renewal answered. Returns whether it did (then as for
    /// [`LeaseKeeper::on_lost`]).
    pub fn check_deadline(&mut self, now_ms: u64) -> bool {
        match self.state {
            State::Held { deadline_ms, .. } if now_ms >= deadline_ms => {
                self.state = State::Unregistered {
                    register_sent_ms: None,
                };
                true
            }
            _ => false,
        }
    }

    fn deadline_after(&self, sent_ms: u64) -> u64 {
        sent_ms + self.config.lease_ms - self.config.margin_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The defaults with a 1 s margin (round numbers below).
    fn config() -> LeaseConfig {
        LeaseConfig {
            margin_ms: 1_000,
            ..LeaseConfig::default()
        }
    }

    #[test]
    fn registers_first_then_renews_every_quarter_lease() {
        let mut keeper = LeaseKeeper::new(config());
        assert_eq!(
            keeper.poll_request(100),
            Some(LeaseRequest::Register { seen: 0 })
        );
        assert_eq!(keeper.poll_request(200), None, "one registration in flight");
        assert!(keeper.on_registered(100, 1));
        assert_eq!(keeper.may_act(150), Some(1));
        assert_eq!(keeper.deadline_ms(), Some(100 + 10_000 - 1_000));
        assert_eq!(keeper.poll_request(2_599), None);
        assert_eq!(
            keeper.poll_request(2_600),
            Some(LeaseRequest::Renew { epoch: 1 })
        );
        keeper.on_renewed(2_600, 1);
        assert_eq!(keeper.deadline_ms(), Some(2_600 + 9_000));
    }

    #[test]
    fn a_failed_renewal_is_retried_soon() {
        let mut keeper = LeaseKeeper::new(config());
        keeper.poll_request(0);
        keeper.on_registered(0, 1);
        assert_eq!(
            keeper.poll_request(2_500),
            Some(LeaseRequest::Renew { epoch: 1 })
        );
        keeper.on_renew_failed(2_600);
        assert_eq!(keeper.next_wakeup_ms(), 2_850);
        assert_eq!(keeper.poll_request(2_849), None);
        assert_eq!(
            keeper.poll_request(2_850),
            Some(LeaseRequest::Renew { epoch: 1 })
        );
    }

    #[test]
    fn stops_acting_at_the_deadline_and_gives_the_lease_up() {
        let mut keeper = LeaseKeeper::new(config());
        keeper.poll_request(0);
        keeper.on_registered(0, 3);
        assert_eq!(keeper.may_act(8_999), Some(3));
        assert_eq!(keeper.may_act(9_000), None);
        assert!(!keeper.check_deadline(8_999));
        assert!(keeper.check_deadline(9_000));
        assert_eq!(
            keeper.poll_request(9_000),
            Some(LeaseRequest::Register { seen: 3 }),
            "the next registration names the epoch it gives up"
        );
    }

    #[test]
    fn an_epoch_a_registration_in_flight_may_fence_is_not_adopted() {
        let mut keeper = LeaseKeeper::new(config());
        assert_eq!(
            keeper.poll_request(0),
            Some(LeaseRequest::Register { seen: 0 })
        );
        // A restarted gateway learns its row's epoch and registers at once.
        keeper.on_epoch_moved(4);
        assert_eq!(
            keeper.poll_request(1),
            Some(LeaseRequest::Register { seen: 4 })
        );
        // A retry of it went too; one got epoch 5, the other found it moved,
        // and that answer came first: wait for the one that made 5.
        assert_eq!(
            keeper.poll_request(2_001),
            Some(LeaseRequest::Register { seen: 4 })
        );
        keeper.on_epoch_moved(5);
        assert_eq!(keeper.poll_request(2_002), None, "5 may be its own");
        assert!(keeper.on_registered(1, 5));
        assert_eq!(keeper.may_act(2_003), Some(5));
    }

    #[test]
    fn an_epoch_a_later_registration_names_is_not_adopted() {
        let mut keeper = LeaseKeeper::new(config());
        keeper.poll_request(0);
        // Its retry finds the row moved (by the first, whose answer is late).
        assert_eq!(
            keeper.poll_request(2_000),
            Some(LeaseRequest::Register { seen: 0 })
        );
        keeper.on_epoch_moved(1);
        // The timer sends the next registration, naming 1.
        assert_eq!(
            keeper.poll_request(4_000),
            Some(LeaseRequest::Register { seen: 1 })
        );
        assert!(
            !keeper.on_registered(0, 1),
            "the registration naming 1 may still move the row to 2"
        );
        assert_eq!(keeper.may_act(4_010), None);
        assert!(keeper.on_registered(4_000, 2));
        assert_eq!(keeper.may_act(4_020), Some(2));
    }

    #[test]
    fn a_stale_loss_or_registration_changes_nothing() {
        let mut keeper = LeaseKeeper::new(config());
        keeper.poll_request(0);
        assert!(keeper.on_registered(0, 5));
        assert!(!keeper.on_registered(0, 4), "an older epoch answered late");
        assert!(!keeper.on_lost(4));
        assert_eq!(keeper.epoch(), Some(5));
        assert!(keeper.on_lost(5));
        assert_eq!(keeper.may_act(1), None);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Poll,
        Reply { which: usize, ok: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u64..4_000).prop_map(Step::Wait),
            Just(Step::Poll),
            (0usize..8, any::<bool>()).prop_map(|(which, ok)| Step::Reply { which, ok }),
        ]
    }

    proptest! {
        /// For any interleaving of sends, replies (out of order, lost or
        /// refused) and time, the keeper may act at `now` only if some
        /// request of its current epoch that the store accepted was sent
        /// after `now - lease + margin`.
        #[test]
        fn never_acts_past_sent_plus_lease_minus_margin(steps in prop::collection::vec(step(), 1..80)) {
            let cfg = config();
            let mut keeper = LeaseKeeper::new(cfg);
            let mut now = 0u64;
            let mut next_epoch = 1;
            // (sent_ms, request) not answered yet.
            let mut in_flight: Vec<(u64, LeaseRequest)> = Vec::new();
            // sent_ms of accepted requests, per epoch.
            let mut accepted: Vec<(Epoch, u64)> = Vec::new();
            for step in steps {
                match step {
                    Step::Wait(ms) => now += ms,
                    Step::Poll => {
                        keeper.check_deadline(now);
                        if let Some(request) = keeper.poll_request(now) {
                            in_flight.push((now, request));
                        }
                    }
                    Step::Reply { which, ok } => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let (sent, request) = in_flight.remove(which % in_flight.len());
                        match (request, ok) {
                            (LeaseRequest::Register { .. }, true) => {
                                accepted.push((next_epoch, sent));
                                keeper.on_registered(sent, next_epoch);
                                next_epoch += 1;
                            }
                            (LeaseRequest::Register { .. }, false) => {}
                            (LeaseRequest::Renew { epoch }, true) => {
                                accepted.push((epoch, sent));
                                keeper.on_renewed(sent, epoch);
                            }
                            (LeaseRequest::Renew { epoch }, false) => {
                                keeper.on_lost(epoch);
                            }
                        }
                    }
                }
                if let Some(epoch) = keeper.may_act(now) {
                    let latest = accepted
                        .iter()
                        .filter(|(e, _)| *e == epoch)
                        .map(|(_, sent)| *sent)
                        .max();
                    prop_assert!(latest.is_some(), "acts under epoch {} never granted", epoch);
                    let latest = latest.unwrap_or_default();
                    prop_assert!(
                        now < latest + cfg.lease_ms - cfg.margin_ms,
                        "acts at {} though the latest accepted send was at {}", now, latest
                    );
                }
            }
        }
    }
}
