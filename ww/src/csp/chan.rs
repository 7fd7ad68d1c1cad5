//! One channel as a sans-IO state machine: the server feeds it operations and
//! carries out the [`Effect`]s it returns, in order.
//!
//! Semantics (these are promises; `tests/csp_model.rs` checks each one):
//! - **Capacity 0** (rendezvous): a send completes only when a receive has taken
//!   its value, i.e. when that receive's offer is committed. **Capacity N ≥ 1**
//!   (buffered): a send completes as soon as its value is queued or handed to a
//!   waiting receive; it waits while N values are queued.
//! - **Order**: values are offered in the order they entered; waiting receives
//!   get offers first come, first served; waiting senders are served first come,
//!   first served. Several offers may be outstanding at once, so which caller
//!   *hears* first is up to the driver, as with any channel with many receivers.
//! - **Two-phase receive** (this is what fixes the Go `SyncChan`'s at-most-once
//!   loss): a value matched to a receive is emitted as [`Effect::Offer`]; the
//!   server then calls [`Chan::commit`] (the value went into the reply) or
//!   [`Chan::abort`] (the caller left first). An aborted value goes back into the
//!   queue ahead of every later value and is offered to the next waiting receive.
//!   At capacity 0 its sender waits again, at the head of the senders.
//!   Re-queued values may briefly make a buffered channel hold more than N values
//!   (N plus the offers that were out); that is allowed and bounded.
//! - **Cancel/disconnect**: [`Chan::cancel`] withdraws a waiting send (its value
//!   never entered) or receive; cancelling an offered receive is an abort. A
//!   capacity-0 send whose value is already offered cannot be recalled: if the
//!   offer commits the value was delivered, if it aborts the value is dropped.
//!   After `cancel(op)` no effect names `op`. No value is lost, none is
//!   delivered twice, and no receive waits while a value is queued.
//! - **Close**: later sends fail with [`ChanError::Closed`], as do waiting sends
//!   (their values never entered). Values already accepted are still delivered;
//!   receives fail with `Closed` once none are queued and none can come back
//!   from an offer (a receive meanwhile waits). A capacity-0 send whose offer
//!   aborts after close fails with `Closed`. Closing twice is an error and
//!   changes nothing.
//! - **Bounds**: pending operations (waiting sends, waiting receives, offers out)
//!   never exceed `waiting_max`; an operation that would exceed it fails at once
//!   with [`ChanError::QueueFull`]. Operation ids must be unique among pending
//!   operations ([`ChanError::DuplicateOp`]); ids of finished ones may be reused.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// An operation id, chosen by the caller and unique among pending operations.
pub type OpId = u64;

/// Default bound on pending operations of one channel.
pub const WAITING_MAX_DEFAULT: usize = 1024;
/// Largest `waiting_max` a channel accepts.
pub const WAITING_LIMIT: usize = 65_536;
/// Largest capacity a channel accepts.
pub const CAPACITY_LIMIT: usize = 65_536;

/// Size and bounds of a [`Chan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChanConfig {
    /// 0 for a rendezvous channel, N for a buffer of N values.
    pub capacity: usize,
    /// Most pending operations: waiting sends and receives plus offers out.
    pub waiting_max: usize,
}

impl Default for ChanConfig {
    fn default() -> Self {
        ChanConfig {
            capacity: 0,
            waiting_max: WAITING_MAX_DEFAULT,
        }
    }
}

/// What the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<V> {
    /// Reply success to this send.
    SendDone(OpId),
    /// Reply this error to this send; its value never entered the channel.
    SendFailed(OpId, ChanError),
    /// Give this value to this receive, then call `commit` or `abort` for it.
    Offer {
        /// The receive the value is for.
        recv: OpId,
        /// The value; the channel keeps a copy until commit.
        value: V,
    },
    /// Reply this error to this receive.
    RecvFailed(OpId, ChanError),
}

/// Why an operation failed; each says what state it left.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChanError {
    /// The channel is closed (and, for a receive, drained).
    #[error("channel closed: this operation did nothing")]
    Closed,
    /// `close` on a closed channel.
    #[error("channel was already closed: closing again changed nothing")]
    AlreadyClosed,
    /// `commit`/`abort` for a receive that has no offer out.
    #[error("no offer is out for receive {0}: nothing changed")]
    UnknownOp(OpId),
    /// The id is already used by a pending operation.
    #[error(
        "operation {0} is already pending: the new one was refused, the pending one is untouched"
    )]
    DuplicateOp(OpId),
    /// Waiting would exceed `waiting_max`.
    #[error("{pending} operations already pending (max {max}): this one was refused and changed nothing")]
    QueueFull {
        /// Pending operations at the time.
        pending: usize,
        /// The configured bound.
        max: usize,
    },
    /// The configuration is out of bounds.
    #[error("capacity {capacity} (max {CAPACITY_LIMIT}) or waiting_max {waiting_max} (max {WAITING_LIMIT}) out of bounds: no channel made")]
    BadConfig {
        /// The requested capacity.
        capacity: usize,
        /// The requested bound on pending operations.
        waiting_max: usize,
    },
}

/// An internal invariant of [`Chan`] does not hold (a bug in this module).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("channel invariant broken: {0}")]
pub struct InvariantBroken(pub &'static str);

/// Who, if anyone, is still owed a reply for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Its send already completed (buffered channels).
    Acked,
    /// Its send completes on commit (capacity 0, or waiting for room).
    Sender(OpId),
    /// Its capacity-0 send was cancelled while the value was offered.
    Withdrawn,
}

/// A value with its place in the entry order.
#[derive(Debug)]
struct Entry<V> {
    seq: u64,
    value: V,
    origin: Origin,
    /// Came back from an aborted offer, so may exceed the capacity.
    returned: bool,
}

/// Where a pending operation is; an index over the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Send,
    SendOffered(OpId),
    Recv,
    Offered,
}

/// A channel of values `V`; see the module docs for its promises.
#[derive(Debug)]
pub struct Chan<V> {
    config: ChanConfig,
    closed: bool,
    next_seq: u64,
    /// Values ready to offer, by `seq`: parked senders at capacity 0, the buffer otherwise.
    queue: VecDeque<Entry<V>>,
    /// Buffered channels only: senders waiting for room, by `seq`.
    blocked: VecDeque<Entry<V>>,
    receivers: VecDeque<OpId>,
    offers: BTreeMap<OpId, Entry<V>>,
    ops: BTreeMap<OpId, Role>,
}

impl<V> Chan<V> {
    /// An open, empty channel, or `BadConfig` if a bound exceeds its limit.
    pub fn new(config: ChanConfig) -> Result<Self, ChanError> {
        if config.capacity > CAPACITY_LIMIT || config.waiting_max > WAITING_LIMIT {
            return Err(ChanError::BadConfig {
                capacity: config.capacity,
                waiting_max: config.waiting_max,
            });
        }
        Ok(Chan {
            config,
            closed: false,
            next_seq: 0,
            queue: VecDeque::new(),
            blocked: VecDeque::new(),
            receivers: VecDeque::new(),
            offers: BTreeMap::new(),
            ops: BTreeMap::new(),
        })
    }

    /// The configuration the channel was made with.
    pub fn config(&self) -> ChanConfig {
        self.config
    }

    /// Whether `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Values queued whose sends have completed (always 0 at capacity 0).
    pub fn len(&self) -> usize {
        if self.config.capacity == 0 {
            0
        } else {
            self.queue.len()
        }
    }

    /// Whether no completed send's value is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends waiting for a receive (capacity 0) or for room, not counting offered ones.
    pub fn waiting_senders(&self) -> usize {
        if self.config.capacity == 0 {
            self.queue.len()
        } else {
            self.blocked.len()
        }
    }

    /// Receives waiting for a value.
    pub fn waiting_receivers(&self) -> usize {
        self.receivers.len()
    }

    /// Offers out, awaiting `commit` or `abort`.
    pub fn in_flight(&self) -> usize {
        self.offers.len()
    }

    /// Operations counted against `waiting_max`.
    pub fn pending(&self) -> usize {
        self.waiting_senders() + self.receivers.len() + self.offers.len()
    }

    /// Whether an offer out would come back into the queue on abort.
    fn acked_in_flight(&self) -> bool {
        self.offers.values().any(|e| e.origin == Origin::Acked)
    }

    /// `QueueFull` if one more pending operation would exceed the bound.
    fn full(&self) -> Option<ChanError> {
        let pending = self.pending();
        (pending >= self.config.waiting_max).then_some(ChanError::QueueFull {
            pending,
            max: self.config.waiting_max,
        })
    }

    /// Checks every internal invariant; `Err` means a bug in this module.
    pub fn check_invariants(&self) -> Result<(), InvariantBroken> {
        let fail = |ok: bool, what: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(InvariantBroken(what))
            }
        };
        let cap = self.config.capacity;
        fail(
            self.receivers.is_empty() || self.queue.is_empty(),
            "a receive waits while a value is queued",
        )?;
        let sorted =
            |q: &VecDeque<Entry<V>>| q.iter().zip(q.iter().skip(1)).all(|(a, b)| a.seq < b.seq);
        fail(
            sorted(&self.queue) && sorted(&self.blocked),
            "queue out of entry order",
        )?;
        if let (Some(last), Some(first)) = (self.queue.back(), self.blocked.front()) {
            fail(
                last.seq < first.seq,
                "a waiting sender is ahead of a queued value",
            )?;
        }
        let sender = |e: &Entry<V>| matches!(e.origin, Origin::Sender(_)) && !e.returned;
        if cap == 0 {
            fail(
                self.blocked.is_empty(),
                "rendezvous channel has blocked senders",
            )?;
            fail(
                self.queue.iter().all(sender),
                "rendezvous queue holds a value without its sender",
            )?;
        } else {
            fail(
                self.queue.iter().all(|e| e.origin == Origin::Acked),
                "buffered value not acked",
            )?;
            fail(
                self.blocked.iter().all(sender),
                "blocked entry without its sender",
            )?;
            let fresh = self.queue.iter().filter(|e| !e.returned).count();
            fail(
                fresh <= cap,
                "buffer holds more than capacity + returned values",
            )?;
            fail(
                self.blocked.is_empty() || self.queue.len() >= cap,
                "sender blocked while there is room",
            )?;
        }
        if self.closed {
            fail(
                self.waiting_senders() == 0,
                "sender waits on a closed channel",
            )?;
            fail(
                self.receivers.is_empty() || self.acked_in_flight(),
                "receive waits on a drained channel",
            )?;
        }
        fail(
            self.pending() <= self.config.waiting_max,
            "more pending than waiting_max",
        )?;
        let role = |op: &OpId| self.ops.get(op).copied();
        let mut indexed = self.receivers.len() + self.offers.len();
        fail(
            self.receivers.iter().all(|r| role(r) == Some(Role::Recv)),
            "receive not indexed",
        )?;
        for e in self.queue.iter().chain(self.blocked.iter()) {
            if let Origin::Sender(s) = e.origin {
                fail(role(&s) == Some(Role::Send), "waiting send not indexed")?;
                indexed += 1;
            }
        }
        for (r, e) in &self.offers {
            fail(role(r) == Some(Role::Offered), "offer not indexed")?;
            if let Origin::Sender(s) = e.origin {
                fail(
                    role(&s) == Some(Role::SendOffered(*r)),
                    "offered send not indexed",
                )?;
                indexed += 1;
            }
        }
        fail(
            indexed == self.ops.len(),
            "index holds stray or duplicate operations",
        )
    }
}

impl<V: Clone> Chan<V> {
    /// Sends `value`; the effects say when (or whether) the send completes.
    pub fn send(&mut self, op: OpId, value: V) -> Vec<Effect<V>> {
        let cap = self.config.capacity;
        if self.ops.contains_key(&op) {
            return vec![Effect::SendFailed(op, ChanError::DuplicateOp(op))];
        }
        if self.closed {
            return vec![Effect::SendFailed(op, ChanError::Closed)];
        }
        let parks = if cap == 0 {
            self.receivers.is_empty()
        } else {
            !self.blocked.is_empty() || self.queue.len() >= cap
        };
        if let Some(err) = parks.then(|| self.full()).flatten() {
            return vec![Effect::SendFailed(op, err)];
        }
        let seq = self.next_seq;
        // 2^64 operations never happen; wrapping keeps this path panic-free.
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut fx = Vec::new();
        let mut entry = Entry {
            seq,
            value,
            origin: Origin::Sender(op),
            returned: false,
        };
        if cap > 0 && parks {
            self.ops.insert(op, Role::Send);
            self.blocked.push_back(entry);
        } else if cap > 0 {
            fx.push(Effect::SendDone(op));
            entry.origin = Origin::Acked;
            self.queue.push_back(entry);
        } else {
            self.ops.insert(op, Role::Send);
            self.queue.push_back(entry);
        }
        self.settle(&mut fx);
        fx
    }

    /// Receives a value: an offer now or later, or `Closed` once drained.
    pub fn recv(&mut self, op: OpId) -> Vec<Effect<V>> {
        let cap = self.config.capacity;
        if self.ops.contains_key(&op) {
            return vec![Effect::RecvFailed(op, ChanError::DuplicateOp(op))];
        }
        if self.closed && self.queue.is_empty() && !self.acked_in_flight() {
            return vec![Effect::RecvFailed(op, ChanError::Closed)];
        }
        // The count stays the same only when a waiting sender becomes the offer,
        // or a blocked sender moves into the room this receive makes.
        let swaps = if cap == 0 {
            !self.queue.is_empty()
        } else {
            !self.blocked.is_empty() && self.queue.len() <= cap
        };
        if let Some(err) = (!swaps).then(|| self.full()).flatten() {
            return vec![Effect::RecvFailed(op, err)];
        }
        self.ops.insert(op, Role::Recv);
        self.receivers.push_back(op);
        let mut fx = Vec::new();
        self.settle(&mut fx);
        fx
    }

    /// The value offered to `recv` was handed over.
    pub fn commit(&mut self, recv: OpId) -> Result<Vec<Effect<V>>, ChanError> {
        let entry = self
            .offers
            .remove(&recv)
            .ok_or(ChanError::UnknownOp(recv))?;
        self.ops.remove(&recv);
        let mut fx = Vec::new();
        if let Origin::Sender(s) = entry.origin {
            self.ops.remove(&s);
            fx.push(Effect::SendDone(s));
        }
        self.settle(&mut fx);
        Ok(fx)
    }

    /// The value offered to `recv` came back; it is queued (or its sender waits) again.
    pub fn abort(&mut self, recv: OpId) -> Result<Vec<Effect<V>>, ChanError> {
        let mut entry = self
            .offers
            .remove(&recv)
            .ok_or(ChanError::UnknownOp(recv))?;
        self.ops.remove(&recv);
        let mut fx = Vec::new();
        match entry.origin {
            Origin::Withdrawn => {}
            Origin::Sender(s) if self.closed => {
                self.ops.remove(&s);
                fx.push(Effect::SendFailed(s, ChanError::Closed));
            }
            origin => {
                if let Origin::Sender(s) = origin {
                    self.ops.insert(s, Role::Send);
                }
                entry.returned = origin == Origin::Acked;
                let at = self.queue.partition_point(|e| e.seq < entry.seq);
                self.queue.insert(at, entry);
            }
        }
        self.settle(&mut fx);
        Ok(fx)
    }

    /// Withdraws a pending send or receive (an offered receive is aborted); no-op if unknown.
    pub fn cancel(&mut self, op: OpId) -> Vec<Effect<V>> {
        let mut fx = Vec::new();
        match self.ops.get(&op).copied() {
            None => return fx,
            Some(Role::Offered) => return self.abort(op).unwrap_or_default(),
            Some(Role::Recv) => self.receivers.retain(|r| *r != op),
            Some(Role::Send) => {
                let mine = |e: &Entry<V>| e.origin == Origin::Sender(op);
                self.queue.retain(|e| !mine(e));
                self.blocked.retain(|e| !mine(e));
            }
            Some(Role::SendOffered(recv)) => {
                // The value is out; whether it was delivered is the offer's to decide.
                if let Some(e) = self.offers.get_mut(&recv) {
                    e.origin = Origin::Withdrawn;
                }
            }
        }
        self.ops.remove(&op);
        self.settle(&mut fx);
        fx
    }

    /// Closes the channel: waiting sends fail, receives fail once drained.
    pub fn close(&mut self) -> Result<Vec<Effect<V>>, ChanError> {
        if self.closed {
            return Err(ChanError::AlreadyClosed);
        }
        self.closed = true;
        let mut waiting = std::mem::take(&mut self.blocked);
        if self.config.capacity == 0 {
            waiting.append(&mut self.queue);
        }
        let mut fx = Vec::new();
        for e in waiting {
            if let Origin::Sender(s) = e.origin {
                self.ops.remove(&s);
                fx.push(Effect::SendFailed(s, ChanError::Closed));
            }
        }
        self.settle(&mut fx);
        Ok(fx)
    }

    /// Matches receives with values and moves blocked senders into room until
    /// nothing changes, then fails receives if the channel is closed and drained.
    fn settle(&mut self, fx: &mut Vec<Effect<V>>) {
        loop {
            if !self.receivers.is_empty() && !self.queue.is_empty() {
                if let (Some(r), Some(e)) = (self.receivers.pop_front(), self.queue.pop_front()) {
                    if let Origin::Sender(s) = e.origin {
                        self.ops.insert(s, Role::SendOffered(r));
                    }
                    self.ops.insert(r, Role::Offered);
                    fx.push(Effect::Offer {
                        recv: r,
                        value: e.value.clone(),
                    });
                    self.offers.insert(r, e);
                    continue;
                }
            }
            if self.config.capacity > 0 && self.queue.len() < self.config.capacity {
                if let Some(mut e) = self.blocked.pop_front() {
                    if let Origin::Sender(s) = e.origin {
                        self.ops.remove(&s);
                        fx.push(Effect::SendDone(s));
                    }
                    e.origin = Origin::Acked;
                    self.queue.push_back(e);
                    continue;
                }
            }
            break;
        }
        if self.closed && self.queue.is_empty() && !self.acked_in_flight() {
            for r in std::mem::take(&mut self.receivers) {
                self.ops.remove(&r);
                fx.push(Effect::RecvFailed(r, ChanError::Closed));
            }
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }
}

#[cfg(test)]
#[path = "chan_tests.rs"]
mod tests;
