//! A gateway against the reference store, with messages delivered at once
//! (or withheld, as a test says).

use super::*;
use crate::lease::model::{Store, TaskStatus};

/// A task id for a test.
fn id(text: &str) -> TaskId {
    TaskId::parse(text).expect("a test id")
}

/// A gateway and a store on one clock; requests the test withholds wait in
/// `held`.
struct Bench {
    store: Store,
    gateway: LeaseGateway,
    now_ms: u64,
    /// Decisions other than sends, in order.
    decisions: Vec<Output>,
    /// Whether requests reach the store.
    connected: bool,
}

impl Bench {
    fn new() -> Bench {
        let config = LeaseConfig::default();
        let mut bench = Bench {
            store: Store::new(config.lease_ms),
            gateway: LeaseGateway::new(0, config, 0),
            now_ms: 0,
            decisions: Vec::new(),
            connected: true,
        };
        bench.step(|g, now| g.handle_timeout(now));
        bench
    }

    /// Calls `f`, then delivers every request (and reply) until quiet.
    fn step(&mut self, f: impl FnOnce(&mut LeaseGateway, u64)) {
        f(&mut self.gateway, self.now_ms);
        while let Some(output) = self.gateway.poll_output() {
            match output {
                Output::Send { id, request } if self.connected => {
                    let reply = self.store.apply(self.now_ms, &request);
                    self.gateway.handle_reply(self.now_ms, id, reply);
                }
                Output::Send { .. } => {}
                other => self.decisions.push(other),
            }
        }
    }

    /// Advances to `until_ms`, waking the gateway whenever it asks.
    fn advance(&mut self, until_ms: u64) {
        loop {
            let wake = self.gateway.poll_timeout().max(self.now_ms + 1);
            if wake > until_ms {
                self.now_ms = until_ms;
                return;
            }
            self.now_ms = wake;
            self.step(|g, now| g.handle_timeout(now));
        }
    }

    fn dispatched(&self) -> Vec<RunRef> {
        self.decisions
            .iter()
            .filter_map(|d| match d {
                Output::Dispatch { run, .. } => Some(run.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_submission_is_acknowledged_run_and_finished_once() {
    let mut bench = Bench::new();
    bench.step(|g, now| g.submit(now, id("t"), 2));
    assert!(bench.decisions.contains(&Output::SubmitAcked {
        task: id("t"),
        epoch: 1
    }));
    assert_eq!(bench.dispatched().len(), 2, "both runs start at once");
    for run in bench.dispatched() {
        bench.step(|g, now| g.run_finished(now, run, RunOutcome::Succeeded));
    }
    let row = bench.store.task("t").expect("stored");
    assert_eq!(row.terminal, Some(TaskStatus::Succeeded));
    assert_eq!(
        bench.gateway.held_tasks().count(),
        0,
        "a terminal task is let go"
    );
}

#[test]
fn a_cancel_is_acknowledged_one_dispatch_window_after_it_committed() {
    let mut bench = Bench::new();
    bench.step(|g, now| g.submit(now, id("t"), 1));
    bench.now_ms = 100;
    bench.step(|g, now| g.cancel(now, id("t")));
    let stopped = bench
        .decisions
        .iter()
        .any(|d| matches!(d, Output::Stop { run } if run.task == "t"));
    assert!(stopped, "the owner stops the run it cancelled");
    let acked = |b: &Bench| {
        b.decisions
            .iter()
            .any(|d| matches!(d, Output::CancelAcked { .. }))
    };
    assert!(!acked(&bench));
    bench.advance(100 + LeaseConfig::default().dispatch_window_ms - 1);
    assert!(!acked(&bench), "acknowledged before the window closed");
    bench.advance(100 + LeaseConfig::default().dispatch_window_ms);
    assert!(acked(&bench));
}

#[test]
fn a_cut_off_gateway_stops_its_runs_at_its_deadline_and_acts_no_more() {
    let mut bench = Bench::new();
    bench.step(|g, now| g.submit(now, id("t"), 1));
    assert_eq!(bench.dispatched().len(), 1);
    bench.connected = false;
    let deadline = bench.gateway.keeper().deadline_ms().expect("registered");
    bench.advance(deadline - 1);
    assert!(bench.gateway.keeper().may_act(bench.now_ms).is_some());
    bench.advance(deadline);
    assert!(bench.gateway.keeper().may_act(bench.now_ms).is_none());
    assert!(bench
        .decisions
        .iter()
        .any(|d| matches!(d, Output::Stop { .. })));
    assert_eq!(bench.gateway.held_tasks().count(), 0);
    bench.step(|g, now| g.submit(now, id("u"), 1));
    assert_eq!(
        bench.decisions.last(),
        Some(&Output::SubmitFailed { task: id("u") })
    );
    // Healed: it registers anew, claims its old task and runs it again.
    bench.connected = true;
    bench.advance(deadline + 5_000);
    assert_eq!(bench.gateway.keeper().epoch(), Some(2));
    let again: Vec<RunRef> = bench
        .dispatched()
        .into_iter()
        .filter(|r| r.task == "t")
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[1].attempt, 2, "a new attempt");
}

#[test]
fn a_start_answered_after_the_dispatch_window_is_not_dispatched() {
    let mut bench = Bench::new();
    // Submit by hand so the start's reply can be held back.
    let epoch = bench.gateway.keeper().epoch().expect("registered");
    bench.store.apply(
        0,
        &Request::Submit {
            gateway: 0,
            epoch,
            task: id("v"),
            runs: 1,
        },
    );
    bench.gateway.hold(id("v"), [0].into_iter());
    bench.gateway.start_runs(0);
    let Some(Output::Send { id, request }) = bench.gateway.poll_output() else {
        panic!("a start to send");
    };
    let reply = bench.store.apply(10, &request);
    let late = LeaseConfig::default().dispatch_window_ms + 1;
    bench.step(|g, _| g.handle_reply(late, id, reply));
    let dispatched = bench.dispatched();
    assert!(
        dispatched.iter().all(|run| run.attempt > 1),
        "attempt 1 dispatched too late: {dispatched:?}"
    );
    assert!(!dispatched.is_empty(), "a new attempt replaces it");
}
