//! Property test: `csp::Chan` against a plain model of the promises in its docs,
//! for rendezvous and buffered channels, driven by a pool of clients that each
//! do one operation at a time and may commit, abort, cancel or disconnect.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestCaseError;
use ww::csp::{Chan, ChanConfig, ChanError, Effect, OpId};

const CLIENTS: usize = 6;
/// An extra client, used only to drain the channel at the end of a case.
const DRAIN: usize = CLIENTS;
/// Values are `client * PER_SENDER + n`, n counting that client's sends.
const PER_SENDER: u64 = 1_000_000;

type Val = u64;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($msg)+)));
        }
    };
}

/// One step; the index picks among the clients the action applies to.
#[derive(Debug, Clone, Copy)]
enum Action {
    Send(usize),
    Recv(usize),
    Commit(usize),
    Abort(usize),
    Cancel(usize),
    Disconnect(usize),
    Close,
    Stray(usize),
    Dup(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Idle,
    Sending(OpId, Val),
    Receiving(OpId),
    Offered(OpId, Val),
}

/// Where a value is, as the promises say it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its send waits: for a receive (capacity 0) or for room (it has not entered).
    Waiting,
    /// Buffered; its send completed.
    Queued,
    Out(OpId),
    Committed,
    Dropped,
}

#[derive(Debug)]
struct Value {
    fate: Fate,
    arrival: u64,
    sender: Option<OpId>,
    acked: bool,
    first_offer: u64,
    last_offer: u64,
    aborts: Vec<u64>,
}

/// Counts of interesting moments, so a vacuous generator shows up.
#[derive(Debug, Default)]
struct Seen {
    reoffers: usize,
    queue_full: usize,
    over_capacity: usize,
    closed_with_offers_out: usize,
    recv_failed_closed: usize,
}

struct Harness {
    chan: Chan<Val>,
    cap: usize,
    max: usize,
    closed: bool,
    clients: Vec<Client>,
    next_val: Vec<u64>,
    values: BTreeMap<Val, Value>,
    recvs: VecDeque<OpId>,
    next_op: OpId,
    clock: u64,
    seen: Seen,
}

impl Harness {
    fn new(cap: usize, max: usize) -> Self {
        let chan = Chan::new(ChanConfig {
            capacity: cap,
            waiting_max: max,
        });
        Harness {
            chan: chan.expect("config in bounds"),
            cap,
            max,
            closed: false,
            clients: vec![Client::Idle; CLIENTS + 1],
            next_val: vec![0; CLIENTS + 1],
            values: BTreeMap::new(),
            recvs: VecDeque::new(),
            next_op: 1,
            clock: 0,
            seen: Seen::default(),
        }
    }

    fn count(&self, f: impl Fn(Fate) -> bool) -> usize {
        self.values.values().filter(|v| f(v.fate)).count()
    }

    /// Values a receive may be offered now: parked senders' at capacity 0, buffered ones otherwise.
    fn available(&self) -> Vec<(u64, Val)> {
        let want = if self.cap == 0 {
            Fate::Waiting
        } else {
            Fate::Queued
        };
        let it = self.values.iter().filter(|(_, v)| v.fate == want);
        it.map(|(k, v)| (v.arrival, *k)).collect()
    }

    fn out(&self) -> usize {
        self.count(|f| matches!(f, Fate::Out(_)))
    }

    fn pending(&self) -> usize {
        self.count(|f| f == Fate::Waiting) + self.recvs.len() + self.out()
    }

    /// The `i mod k`-th of the first `n` clients that `pred` accepts.
    fn pick(&self, i: usize, n: usize, pred: impl Fn(Client) -> bool) -> Option<usize> {
        let fit: Vec<usize> = (0..n).filter(|c| pred(self.clients[*c])).collect();
        (!fit.is_empty()).then(|| fit[i % fit.len()])
    }

    fn client_of(&self, op: OpId) -> Option<usize> {
        self.clients.iter().position(|c| match *c {
            Client::Sending(o, _) | Client::Receiving(o) | Client::Offered(o, _) => o == op,
            Client::Idle => false,
        })
    }

    fn value(&mut self, v: Val) -> Result<&mut Value, TestCaseError> {
        self.values
            .get_mut(&v)
            .ok_or_else(|| TestCaseError::fail(format!("unknown value {v}")))
    }

    fn new_op(&mut self) -> OpId {
        self.next_op += 1;
        self.next_op
    }

    /// Checks and applies one effect; `committed` is the value a commit just delivered.
    fn effect(
        &mut self,
        e: Effect<Val>,
        committed: Option<Val>,
        before: usize,
    ) -> Result<(), TestCaseError> {
        let op = op_of(&e);
        let c = self
            .client_of(op)
            .ok_or_else(|| TestCaseError::fail(format!("{e:?} names no pending op")))?;
        let client = self.clients[c];
        match (e, client) {
            (Effect::SendDone(_), Client::Sending(_, v)) => {
                let fate = self.values[&v].fate;
                if self.cap == 0 {
                    ensure!(
                        committed == Some(v) && fate == Fate::Committed,
                        "rendezvous send {op} done before its value {v} was committed"
                    );
                } else {
                    let oldest = self
                        .values
                        .values()
                        .filter(|x| x.fate == Fate::Waiting)
                        .map(|x| x.arrival)
                        .min();
                    ensure!(
                        fate == Fate::Waiting && oldest == Some(self.values[&v].arrival),
                        "send {op} done out of FIFO order"
                    );
                    let queued = self.count(|f| f == Fate::Queued);
                    ensure!(queued < self.cap, "send {op} done into a full buffer");
                    self.value(v)?.fate = Fate::Queued;
                }
                let val = self.value(v)?;
                (val.acked, val.sender) = (true, None);
            }
            (Effect::SendFailed(_, err), Client::Sending(_, v)) => {
                ensure!(
                    self.values[&v].fate == Fate::Waiting,
                    "send {op} failed with its value {v} entered"
                );
                self.check_error(&err, before)?;
                let val = self.value(v)?;
                (val.fate, val.sender) = (Fate::Dropped, None);
            }
            (Effect::Offer { value, .. }, Client::Receiving(_)) => {
                ensure!(
                    self.recvs.front() == Some(&op),
                    "offer to {op} but {:?} waited first",
                    self.recvs.front()
                );
                let oldest = self.available().into_iter().min().map(|(_, v)| v);
                ensure!(
                    oldest == Some(value),
                    "offered {value}, oldest available is {oldest:?}"
                );
                self.recvs.pop_front();
                self.clock += 1;
                let clock = self.clock;
                self.seen.reoffers += usize::from(!self.values[&value].aborts.is_empty());
                let val = self.value(value)?;
                (val.fate, val.last_offer) = (Fate::Out(op), clock);
                if val.first_offer == 0 {
                    val.first_offer = clock;
                }
                self.clients[c] = Client::Offered(op, value);
                return Ok(());
            }
            (Effect::RecvFailed(_, err), Client::Receiving(_)) => {
                ensure!(
                    self.recvs.contains(&op),
                    "receive {op} failed but was not waiting"
                );
                self.check_error(&err, before)?;
                if err == ChanError::Closed {
                    self.seen.recv_failed_closed += 1;
                    ensure!(
                        self.available().is_empty() && (self.cap == 0 || self.out() == 0),
                        "receive {op} failed Closed before drained"
                    );
                }
                self.recvs.retain(|r| *r != op);
            }
            (e, client) => ensure!(false, "{e:?} but client {c} is {client:?}"),
        }
        self.clients[c] = Client::Idle;
        Ok(())
    }

    fn check_error(&mut self, err: &ChanError, before: usize) -> Result<(), TestCaseError> {
        match *err {
            ChanError::Closed => ensure!(self.closed, "Closed on an open channel"),
            ChanError::QueueFull { pending, max } => {
                self.seen.queue_full += 1;
                ensure!(
                    pending == before && max == self.max && before >= max,
                    "QueueFull with {before} pending of {}",
                    self.max
                );
            }
            ref other => ensure!(false, "unexpected error {other}"),
        }
        Ok(())
    }

    fn run(
        &mut self,
        fx: Vec<Effect<Val>>,
        committed: Option<Val>,
        before: usize,
    ) -> Result<(), TestCaseError> {
        fx.into_iter()
            .try_for_each(|e| self.effect(e, committed, before))
    }

    /// An offered value comes back: re-queued, its sender waits again, or dropped if withdrawn.
    fn take_back(&mut self, c: usize, op: OpId, v: Val) -> Result<(), TestCaseError> {
        self.clock += 1;
        let (cap, clock) = (self.cap, self.clock);
        let val = self.value(v)?;
        ensure!(val.fate == Fate::Out(op), "value {v} not out to {op}");
        val.aborts.push(clock);
        val.fate = match (cap, val.sender) {
            (0, Some(_)) => Fate::Waiting,
            (0, None) => Fate::Dropped,
            _ => Fate::Queued,
        };
        self.clients[c] = Client::Idle;
        Ok(())
    }

    fn send_as(&mut self, c: usize) -> Result<(), TestCaseError> {
        let (op, before) = (self.new_op(), self.pending());
        self.clock += 1;
        let v = c as u64 * PER_SENDER + self.next_val[c];
        self.next_val[c] += 1;
        let value = Value {
            fate: Fate::Waiting,
            arrival: self.clock,
            sender: Some(op),
            acked: false,
            first_offer: 0,
            last_offer: 0,
            aborts: Vec::new(),
        };
        self.values.insert(v, value);
        self.clients[c] = Client::Sending(op, v);
        let fx = self.chan.send(op, v);
        ensure!(
            !self.closed || fx == [Effect::SendFailed(op, ChanError::Closed)],
            "send after close: {fx:?}"
        );
        self.run(fx, None, before)
    }

    fn recv_as(&mut self, c: usize) -> Result<(), TestCaseError> {
        let (op, before) = (self.new_op(), self.pending());
        self.clients[c] = Client::Receiving(op);
        self.recvs.push_back(op);
        let fx = self.chan.recv(op);
        self.run(fx, None, before)
    }

    fn commit_as(&mut self, c: usize) -> Result<(), TestCaseError> {
        let Client::Offered(op, v) = self.clients[c] else {
            return Ok(());
        };
        let val = self.value(v)?;
        ensure!(val.fate == Fate::Out(op), "committing {v} not out to {op}");
        let sender = val.sender;
        val.fate = Fate::Committed;
        self.clients[c] = Client::Idle;
        let fx = self
            .chan
            .commit(op)
            .map_err(|e| TestCaseError::fail(format!("commit {op}: {e}")))?;
        self.run(fx, Some(v), 0)?;
        ensure!(
            self.cap > 0 || sender.is_none() || self.values[&v].acked,
            "rendezvous sender of {v} not told on commit"
        );
        Ok(())
    }

    /// Withdraws client `c`'s operation: `abort` for an offer if `via_abort`, else `cancel`.
    fn withdraw(&mut self, c: usize, via_abort: bool) -> Result<(), TestCaseError> {
        let (op, fx) = match self.clients[c] {
            Client::Idle => return Ok(()),
            Client::Offered(op, v) => {
                self.take_back(c, op, v)?;
                let fx = if via_abort {
                    self.chan.abort(op)
                } else {
                    Ok(self.chan.cancel(op))
                };
                (
                    op,
                    fx.map_err(|e| TestCaseError::fail(format!("abort {op}: {e}")))?,
                )
            }
            Client::Sending(op, v) => {
                let val = self.value(v)?;
                if val.fate == Fate::Waiting {
                    val.fate = Fate::Dropped;
                }
                val.sender = None;
                self.clients[c] = Client::Idle;
                (op, self.chan.cancel(op))
            }
            Client::Receiving(op) => {
                self.recvs.retain(|r| *r != op);
                self.clients[c] = Client::Idle;
                (op, self.chan.cancel(op))
            }
        };
        ensure!(
            fx.iter().all(|e| op_of(e) != op),
            "effect names withdrawn {op}: {fx:?}"
        );
        self.run(fx, None, 0)
    }

    fn step(&mut self, a: Action) -> Result<(), TestCaseError> {
        self.clock += 1;
        let idle = |c| c == Client::Idle;
        let offered = |c| matches!(c, Client::Offered(..));
        let busy = |c| c != Client::Idle;
        match a {
            Action::Send(i) => self
                .pick(i, CLIENTS, idle)
                .map_or(Ok(()), |c| self.send_as(c))?,
            Action::Recv(i) => self
                .pick(i, CLIENTS, idle)
                .map_or(Ok(()), |c| self.recv_as(c))?,
            Action::Commit(i) => self
                .pick(i, CLIENTS + 1, offered)
                .map_or(Ok(()), |c| self.commit_as(c))?,
            Action::Abort(i) => self
                .pick(i, CLIENTS, offered)
                .map_or(Ok(()), |c| self.withdraw(c, true))?,
            Action::Cancel(i) => self
                .pick(i, CLIENTS, busy)
                .map_or(Ok(()), |c| self.withdraw(c, false))?,
            Action::Disconnect(i) => self
                .pick(i, CLIENTS, busy)
                .map_or(Ok(()), |c| self.withdraw(c, true))?,
            Action::Close if self.closed => ensure!(
                self.chan.close() == Err(ChanError::AlreadyClosed),
                "second close"
            ),
            Action::Close => {
                self.closed = true;
                self.seen.closed_with_offers_out += usize::from(self.out() > 0);
                let fx = self
                    .chan
                    .close()
                    .map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
                self.run(fx, None, 0)?;
            }
            Action::Stray(i) => {
                let not_offered = |c| matches!(c, Client::Sending(..) | Client::Receiving(_));
                let op = match self.pick(i, CLIENTS, not_offered) {
                    Some(c) if i % 2 == 1 => match self.clients[c] {
                        Client::Sending(op, _) | Client::Receiving(op) => op,
                        _ => 0,
                    },
                    _ => u64::MAX - i as u64,
                };
                ensure!(
                    self.chan.commit(op) == Err(ChanError::UnknownOp(op)),
                    "commit of {op}"
                );
                ensure!(
                    self.chan.abort(op) == Err(ChanError::UnknownOp(op)),
                    "abort of {op}"
                );
            }
            Action::Dup(i) => {
                let Some(c) = self.pick(i, CLIENTS, busy) else {
                    return self.check();
                };
                let (Client::Sending(op, _) | Client::Receiving(op) | Client::Offered(op, _)) =
                    self.clients[c]
                else {
                    return self.check();
                };
                let dup = ChanError::DuplicateOp(op);
                ensure!(
                    self.chan.send(op, 0) == [Effect::SendFailed(op, dup.clone())],
                    "duplicate send {op}"
                );
                ensure!(
                    self.chan.recv(op) == [Effect::RecvFailed(op, dup)],
                    "duplicate recv {op}"
                );
            }
        }
        self.check()
    }

    /// The promises that hold between steps.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let c = &self.chan;
        c.check_invariants()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (waiting, queued, out) = (
            self.count(|f| f == Fate::Waiting),
            self.count(|f| f == Fate::Queued),
            self.out(),
        );
        ensure!(c.is_closed() == self.closed, "closed flag");
        ensure!(
            c.waiting_senders() == waiting,
            "waiting senders {} vs model {waiting}",
            c.waiting_senders()
        );
        ensure!(
            c.waiting_receivers() == self.recvs.len(),
            "waiting receivers {} vs model {}",
            c.waiting_receivers(),
            self.recvs.len()
        );
        ensure!(
            c.in_flight() == out,
            "in flight {} vs model {out}",
            c.in_flight()
        );
        ensure!(
            c.len() == queued && (self.cap > 0 || queued == 0),
            "buffered {} vs model {queued}",
            c.len()
        );
        ensure!(
            self.recvs.is_empty() || self.available().is_empty(),
            "a receive waits while a value is available"
        );
        ensure!(
            self.cap == 0 || waiting == 0 || queued >= self.cap,
            "a sender waits while there is room"
        );
        ensure!(
            !self.closed || waiting == 0,
            "a sender waits on a closed channel"
        );
        let drained = self.available().is_empty() && (self.cap == 0 || out == 0);
        ensure!(
            !(self.closed && drained) || self.recvs.is_empty(),
            "a receive waits on a drained closed channel"
        );
        ensure!(
            self.pending() <= self.max,
            "{} pending over max {}",
            self.pending(),
            self.max
        );
        for (k, v) in &self.values {
            ensure!(
                !v.acked || matches!(v.fate, Fate::Queued | Fate::Out(_) | Fate::Committed),
                "acknowledged value {k} lost: {:?}",
                v.fate
            );
        }
        self.seen.over_capacity += usize::from(self.cap > 0 && queued > self.cap);
        Ok(())
    }

    /// Closes, commits every offer and receives until Closed, then checks every value's fate.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.step(Action::Close)?;
        for _ in 0..1000 {
            if let Some(c) = self
                .clients
                .iter()
                .position(|c| matches!(c, Client::Offered(..)))
            {
                self.commit_as(c)?;
            } else if self.clients[DRAIN] == Client::Idle {
                self.recv_as(DRAIN)?;
                if self.clients[DRAIN] == Client::Idle {
                    break;
                }
            } else {
                ensure!(false, "drain receive waits with nothing out");
            }
            self.check()?;
        }
        self.check()?;
        ensure!(
            self.clients.iter().all(|c| *c == Client::Idle),
            "clients left waiting: {:?}",
            self.clients
        );
        ensure!(
            self.chan.pending() == 0 && self.chan.is_empty(),
            "channel not empty after drain"
        );
        for (k, v) in &self.values {
            ensure!(
                !v.acked || v.fate == Fate::Committed,
                "acknowledged value {k} never delivered"
            );
        }
        self.check_sender_order()
    }

    /// A sender's later value is delivered by an earlier offer only if the earlier value's offer aborted after it.
    fn check_sender_order(&self) -> Result<(), TestCaseError> {
        let done: Vec<(&Val, &Value)> = self
            .values
            .iter()
            .filter(|(_, v)| v.fate == Fate::Committed)
            .collect();
        for (a, va) in &done {
            for (b, vb) in done
                .iter()
                .filter(|(b, _)| **b / PER_SENDER == **a / PER_SENDER && b > a)
            {
                let excused = va.aborts.iter().any(|t| *t > vb.first_offer);
                ensure!(
                    vb.last_offer > va.last_offer || excused,
                    "{b} delivered ahead of {a} without an abort"
                );
            }
        }
        Ok(())
    }
}

/// The operation an effect answers.
fn op_of(e: &Effect<Val>) -> OpId {
    match e {
        Effect::SendDone(op) | Effect::SendFailed(op, _) | Effect::RecvFailed(op, _) => *op,
        Effect::Offer { recv, .. } => *recv,
    }
}

fn action() -> impl Strategy<Value = Action> {
    let i = || any::<u8>().prop_map(usize::from);
    prop_oneof![
        30 => i().prop_map(Action::Send),
        30 => i().prop_map(Action::Recv),
        25 => i().prop_map(Action::Commit),
        12 => i().prop_map(Action::Abort),
        8 => i().prop_map(Action::Cancel),
        8 => i().prop_map(Action::Disconnect),
        3 => i().prop_map(Action::Stray),
        3 => i().prop_map(Action::Dup),
        1 => Just(Action::Close),
    ]
}

fn run_case(cap: usize, max: usize, actions: &[Action]) -> Result<Seen, TestCaseError> {
    let mut h = Harness::new(cap, max);
    for a in actions {
        h.step(*a)?;
    }
    h.finish()?;
    Ok(h.seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rendezvous_keeps_its_promises(max in 1usize..=8, actions in prop::collection::vec(action(), 0..=80)) {
        run_case(0, max, &actions)?;
    }

    #[test]
    fn buffered_keeps_its_promises(cap in 1usize..=3, max in 1usize..=8, actions in prop::collection::vec(action(), 0..=80)) {
        run_case(cap, max, &actions)?;
    }
}

/// The generator reaches the states the promises are about; otherwise the properties above prove little.
#[test]
fn generator_reaches_interesting_states() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (
        0usize..=3,
        1usize..=8,
        prop::collection::vec(action(), 0..=80),
    );
    let mut total = Seen::default();
    for _ in 0..300 {
        let (cap, max, actions) = strategy.new_tree(&mut runner).expect("strategy").current();
        let seen = run_case(cap, max, &actions).expect("case passes");
        total.reoffers += seen.reoffers;
        total.queue_full += seen.queue_full;
        total.over_capacity += seen.over_capacity;
        total.closed_with_offers_out += seen.closed_with_offers_out;
        total.recv_failed_closed += seen.recv_failed_closed;
    }
    let s = &total;
    let all = [
        s.reoffers,
        s.queue_full,
        s.over_capacity,
        s.closed_with_offers_out,
        s.recv_failed_closed,
    ];
    assert!(all.iter().all(|n| *n > 0), "{total:?}");
}
