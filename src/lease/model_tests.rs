//! The reference store's rules, one by one.

use super::*;

/// A task id for a test.
fn id(text: &str) -> TaskId {
    TaskId::parse(text).expect("a test id")
}

const LEASE_MS: u64 = 10_000;

fn run(task: &str, index: u32, attempt: u32) -> RunRef {
    RunRef {
        task: id(task),
        index,
        attempt,
    }
}

fn register(store: &mut Store, now_ms: u64, gateway: GatewayId) -> Epoch {
    let seen = store.gateway(gateway).map_or(0, |row| row.epoch);
    match store.apply(now_ms, &Request::Register { gateway, seen }) {
        Reply::Registered { epoch } => epoch,
        other => panic!("register: {other:?}"),
    }
}

fn submit(store: &mut Store, now_ms: u64, gateway: GatewayId, epoch: Epoch, task: &str) -> Reply {
    store.apply(
        now_ms,
        &Request::Submit {
            gateway,
            epoch,
            task: id(task),
            runs: 1,
        },
    )
}

fn start(store: &mut Store, now_ms: u64, gateway: GatewayId, epoch: Epoch, r: RunRef) -> Reply {
    store.apply(
        now_ms,
        &Request::StartRuns {
            gateway,
            epoch,
            runs: vec![r],
        },
    )
}

fn finish(store: &mut Store, now_ms: u64, gateway: GatewayId, epoch: Epoch, r: RunRef) -> Reply {
    store.apply(
        now_ms,
        &Request::FinishRun {
            gateway,
            epoch,
            run: r,
            outcome: RunOutcome::Succeeded,
        },
    )
}

fn claim(store: &mut Store, now_ms: u64, gateway: GatewayId, epoch: Epoch) -> Vec<TaskId> {
    match store.apply(
        now_ms,
        &Request::Claim {
            gateway,
            epoch,
            max: 10,
            known: Vec::new(),
        },
    ) {
        Reply::Claimed(tasks) => tasks.into_iter().map(|t| t.task).collect(),
        other => panic!("claim: {other:?}"),
    }
}

#[test]
fn a_lease_ends_at_its_expiry_and_a_renewal_cannot_revive_it() {
    let mut store = Store::new(LEASE_MS);
    let epoch = register(&mut store, 0, 0);
    assert!(store.lease_valid(0, epoch, LEASE_MS - 1));
    assert!(!store.lease_valid(0, epoch, LEASE_MS));
    let renew = Request::Renew { gateway: 0, epoch };
    assert_eq!(store.apply(5_000, &renew), Reply::Renewed);
    assert!(store.lease_valid(0, epoch, 14_999));
    assert_eq!(
        store.apply(15_000, &renew),
        Reply::Refused(Refusal::LeaseLost)
    );
    assert_eq!(register(&mut store, 15_000, 0), epoch + 1);
}

#[test]
fn a_delayed_registration_cannot_fence_a_later_epoch() {
    let mut store = Store::new(LEASE_MS);
    let first = Request::Register {
        gateway: 0,
        seen: 0,
    };
    assert_eq!(store.apply(0, &first), Reply::Registered { epoch: 1 });
    // The same request again (a retry, or a copy held in the network).
    assert_eq!(store.apply(5, &first), Reply::EpochMoved { current: 1 });
    assert!(store.lease_valid(0, 1, 5), "epoch 1 still holds");
    let next = Request::Register {
        gateway: 0,
        seen: 1,
    };
    assert_eq!(store.apply(6, &next), Reply::Registered { epoch: 2 });
}

#[test]
fn only_orphaned_tasks_are_claimed_and_a_running_run_needs_a_new_attempt() {
    let mut store = Store::new(LEASE_MS);
    let a = register(&mut store, 0, 0);
    let b = register(&mut store, 0, 1);
    assert_eq!(submit(&mut store, 0, 0, a, "t"), Reply::Done);
    assert_eq!(
        start(&mut store, 0, 0, a, run("t", 0, 1)),
        Reply::Started(vec![(run("t", 0, 1), Ok(()))])
    );
    store.apply(
        9_000,
        &Request::Renew {
            gateway: 1,
            epoch: b,
        },
    );
    assert!(claim(&mut store, 9_999, 1, b).is_empty(), "a's lease holds");
    assert_eq!(claim(&mut store, 10_000, 1, b), vec![id("t")]);
    // a's late result is fenced; b must start a newer attempt.
    assert_eq!(
        finish(&mut store, 10_000, 0, a, run("t", 0, 1)),
        Reply::Refused(Refusal::LeaseLost)
    );
    assert_eq!(
        start(&mut store, 10_000, 1, b, run("t", 0, 1)),
        Reply::Started(vec![(run("t", 0, 1), Err(Refusal::StaleAttempt))])
    );
    start(&mut store, 10_000, 1, b, run("t", 0, 2));
    assert_eq!(
        finish(&mut store, 10_001, 1, b, run("t", 0, 2)),
        Reply::Finished {
            terminal: Some(TaskStatus::Succeeded)
        }
    );
    assert_eq!(
        finish(&mut store, 10_002, 1, b, run("t", 0, 2)),
        Reply::Refused(Refusal::Terminal),
        "one terminal record"
    );
}

#[test]
fn a_cancel_stops_every_later_start_and_is_itself_final() {
    let mut store = Store::new(LEASE_MS);
    let a = register(&mut store, 0, 0);
    let b = register(&mut store, 0, 1);
    submit(&mut store, 0, 0, a, "t");
    let cancel = Request::Cancel {
        gateway: 1,
        epoch: b,
        task: id("t"),
    };
    assert_eq!(store.apply(1, &cancel), Reply::Done);
    assert_eq!(store.apply(2, &cancel), Reply::Done, "a retried cancel");
    assert_eq!(
        start(&mut store, 3, 0, a, run("t", 0, 1)),
        Reply::Started(vec![(run("t", 0, 1), Err(Refusal::Cancelled))])
    );
    let poll = Request::PollCancelled {
        gateway: 0,
        epoch: a,
        tasks: vec![id("t")],
    };
    assert_eq!(store.apply(4, &poll), Reply::CancelledTasks(vec![id("t")]));
    let row = store.task("t").expect("stored");
    assert_eq!(row.terminal, Some(TaskStatus::Cancelled));
    assert_eq!(row.runs[&0].status, RunStatus::Cancelled);
}

#[test]
fn a_lost_claim_reply_is_reconciled_by_the_next_claim() {
    let mut store = Store::new(LEASE_MS);
    let a = register(&mut store, 0, 0);
    submit(&mut store, 0, 0, a, "t");
    submit(&mut store, 0, 0, a, "u");
    let reply = store.apply(
        1,
        &Request::Claim {
            gateway: 0,
            epoch: a,
            max: 10,
            known: vec![id("t")],
        },
    );
    let Reply::Claimed(tasks) = reply else {
        panic!("{reply:?}");
    };
    let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
    assert_eq!(names, ["u"], "its own task it did not list");
}
